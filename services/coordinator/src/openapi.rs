//! The OpenAPI 3 description of the coordinator's admin port, served (without authentication) at
//! `GET /openapi.json`. Kept true by `tests/tests/coordinator_admin.rs`: every route the router
//! serves is documented here with its access, and every documented operation answers as
//! documented.

use axum::Json;
use serde_json::{json, Value};

fn err(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn ok(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "type": "object" } } } })
}

/// `security` for an operation needing any token (`admin: false`) or an admin token.
fn secured(mut op: Value, admin: bool) -> Value {
    op["security"] = json!([{ "bearer": [] }]);
    op["responses"]["401"] = err("no valid bearer token");
    if admin {
        op["responses"]["403"] = err("the token is read-only; role admin is needed");
        op["x-tailsift-role"] = json!("admin");
    } else {
        op["x-tailsift-role"] = json!("read_only");
    }
    op
}

fn public(mut op: Value) -> Value {
    op["security"] = json!([]);
    op
}

fn policy_body() -> Value {
    json!({ "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/PolicyBody" } } } })
}

/// The document.
pub fn document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Tailsift coordinator admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Policy versions, hash seeds and Raft membership of a Tailsift coordinator cluster. Writes sent to a follower are forwarded to the leader, except membership changes (421 names the leader). Reads carry x-tailsift-policy-version and x-tailsift-applied-index headers.",
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
                "PolicyBody": {
                    "type": "object", "required": ["document"], "additionalProperties": false,
                    "properties": {
                        "document": { "type": "string" },
                        "format": { "type": "string", "enum": ["yaml", "json", "otel_tail_sampling"], "default": "yaml" },
                    },
                },
                "SettingsBody": {
                    "type": "object", "required": ["settings"], "additionalProperties": false,
                    "properties": { "settings": {
                        "type": "object", "required": ["history_limit"], "additionalProperties": false,
                        "properties": {
                            "history_limit": { "type": "integer", "minimum": 1, "maximum": 1000, "description": "policy versions kept for rollback (default 20)" },
                            "sampler": {
                                "type": "object", "additionalProperties": false,
                                "description": "applied live by every worker; a key left out keeps each worker's own configuration",
                                "properties": {
                                    "decision_wait_ms": { "type": "integer", "minimum": 100, "maximum": 3600000 },
                                    "send_delay_ms": { "type": "integer", "minimum": 0, "maximum": 600000 },
                                    "soft_limit_bytes": { "type": "integer", "minimum": 1048576 },
                                    "hard_limit_bytes": { "type": "integer" },
                                    "stress_probability": { "type": "number", "minimum": 0, "maximum": 1 },
                                },
                            },
                        },
                    } },
                },
                "NewMember": {
                    "type": "object", "required": ["id", "raft_addr", "admin_addr"], "additionalProperties": false,
                    "properties": {
                        "id": { "type": "integer", "minimum": 0 },
                        "raft_addr": { "type": "string", "description": "host:port" },
                        "admin_addr": { "type": "string", "description": "host:port" },
                    },
                },
                "JaegerStrategy": {
                    "type": "object", "required": ["strategyType"],
                    "properties": {
                        "strategyType": { "type": "string", "enum": ["PROBABILISTIC", "RATE_LIMITING"] },
                        "probabilisticSampling": { "type": "object", "properties": { "samplingRate": { "type": "number" } } },
                        "rateLimitingSampling": { "type": "object", "properties": { "maxTracesPerSecond": { "type": "integer" } } },
                        "operationSampling": { "type": "object", "properties": {
                            "defaultSamplingProbability": { "type": "number" },
                            "defaultLowerBoundTracesPerSecond": { "type": "number" },
                            "perOperationStrategies": { "type": "array", "items": { "type": "object", "properties": {
                                "operation": { "type": "string" },
                                "probabilisticSampling": { "type": "object", "properties": { "samplingRate": { "type": "number" } } },
                            } } },
                        } },
                    },
                },
            },
        },
        "paths": {
            "/v1/policy": {
                "get": secured(json!({ "summary": "Current policy version, seeds and the applied index it reflects", "responses": { "200": ok("the current policy") } }), false),
                "put": secured(json!({ "summary": "Validate and publish a new policy version", "requestBody": policy_body(), "responses": {
                    "200": ok("published: version, seeds, log_index"), "400": err("invalid body or policy (issues: [{path, message}])"), "503": err("no leader reachable") } }), true),
            },
            "/v1/policy/validate": {
                "post": secured(json!({ "summary": "Validate a policy without publishing it", "requestBody": policy_body(), "responses": {
                    "200": ok("valid: the policy names"), "400": err("invalid body or policy") } }), false),
            },
            "/v1/policy/history": {
                "get": secured(json!({ "summary": "The versions kept for rollback, newest first", "responses": { "200": ok("history") } }), false),
            },
            "/v1/policy/rollback": {
                "post": secured(json!({ "summary": "Publish an earlier version again as a new version",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["version"], "properties": { "version": { "type": "integer" } } } } } },
                    "responses": { "200": ok("published"), "400": err("invalid body"), "404": err("version not kept"), "503": err("no leader reachable") } }), true),
            },
            "/v1/policy/shadow": {
                "get": secured(json!({ "summary": "The shadow policy and what it would keep beside the live one: per worker, in total and per rule", "responses": { "200": ok("shadow, live_version, workers, total") } }), false),
                "put": secured(json!({ "summary": "Validate and set a candidate policy as shadow (evaluated by every worker, decisions unchanged)", "requestBody": policy_body(), "responses": {
                    "200": ok("set: shadow_revision, log_index"), "400": err("invalid body or policy (issues: [{path, message}])"), "503": err("no leader reachable") } }), true),
                "delete": secured(json!({ "summary": "Remove the shadow policy", "responses": { "200": ok("removed"), "503": err("no leader reachable") } }), true),
            },
            "/v1/settings": {
                "get": secured(json!({ "summary": "Live cluster settings and their revision", "responses": { "200": ok("settings, revision") } }), false),
                "put": secured(json!({ "summary": "Replace the live cluster settings; every worker applies the sampler settings at once",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/SettingsBody" } } } },
                    "responses": { "200": ok("settings, revision, log_index"), "400": err("invalid body or setting (the error names the key)"), "503": err("no leader reachable") } }), true),
            },
            "/v1/seed/rotate": {
                "post": secured(json!({ "summary": "Schedule a new random hash seed for the next policy version", "responses": { "200": ok("scheduled"), "503": err("no leader reachable") } }), true),
            },
            "/v1/cluster/status": {
                "get": secured(json!({ "summary": "Members, leader, term, log and applied indexes", "responses": { "200": ok("status") } }), false),
            },
            "/v1/cluster/members": {
                "post": secured(json!({ "summary": "Add a node: as learner until caught up, then promoted to voter (leader only)",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/NewMember" } } } },
                    "responses": { "200": ok("the new membership"), "400": err("invalid body"), "409": err("already a voter, or the change was refused"),
                        "421": err("not the leader: leader and leader_admin_addr"), "503": err("not committed in time (no majority)") } }), true),
            },
            "/v1/cluster/members/{id}": {
                "delete": secured(json!({ "summary": "Remove a voter or learner (leader only)",
                    "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer", "minimum": 0 } }],
                    "responses": { "200": ok("the new membership"), "400": err("id not an integer"), "404": err("not a member"),
                        "409": err("last voter, or the change was refused"), "421": err("not the leader"), "503": err("not committed in time (no majority)") } }), true),
            },
            "/v1/workers": {
                "get": secured(json!({ "summary": "The sampling workers that reported the policy version they apply to this coordinator (its memory, not replicated)",
                    "responses": { "200": ok("node, and workers: [{worker_id, version, reported_unix_ms}]") } }), false),
            },
            "/api/sampling": {
                "get": public(json!({ "summary": "Jaeger remote sampling strategy for a service, derived from the current policy (unauthenticated, like Jaeger's endpoint)",
                    "parameters": [{ "name": "service", "in": "query", "required": true, "schema": { "type": "string", "minLength": 1, "maxLength": crate::jaeger_sampling::MAX_SERVICE_LEN } }],
                    "responses": { "200": { "description": "strategy", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/JaegerStrategy" } } } },
                        "400": { "description": "service missing, or longer than 512 bytes", "content": { "text/plain": {} } } } })),
            },
            "/sampling": {
                "get": public(json!({ "summary": "The same as /api/sampling, at the Jaeger agent's path (unauthenticated)",
                    "parameters": [{ "name": "service", "in": "query", "required": true, "schema": { "type": "string", "minLength": 1, "maxLength": crate::jaeger_sampling::MAX_SERVICE_LEN } }],
                    "responses": { "200": { "description": "strategy", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/JaegerStrategy" } } } },
                        "400": { "description": "service missing, or longer than 512 bytes", "content": { "text/plain": {} } } } })),
            },
            "/openapi.json": {
                "get": public(json!({ "summary": "This document", "responses": { "200": ok("OpenAPI 3 document") } })),
            },
            "/metrics": {
                "get": public(json!({ "summary": "Prometheus metrics", "responses": { "200": { "description": "text exposition format", "content": { "text/plain": {} } } } })),
            },
            "/healthz": {
                "get": public(json!({ "summary": "Alive", "responses": { "200": { "description": "ok", "content": { "text/plain": {} } } } })),
            },
            "/readyz": {
                "get": public(json!({ "summary": "Ready while a Raft leader is known", "responses": {
                    "200": { "description": "ready", "content": { "text/plain": {} } }, "503": { "description": "no leader known", "content": { "text/plain": {} } } } })),
            },
        },
    })
}

/// Routes served by the shared telemetry router next to the admin routes (all `GET`, public).
pub const TELEMETRY_ROUTES: &[&str] = &["/metrics", "/healthz", "/readyz"];

pub(crate) async fn serve() -> Json<Value> {
    ::metrics::counter!(crate::metrics::ADMIN_REQUESTS, "route" => "/openapi.json", "status" => "200").increment(1);
    Json(document())
}
