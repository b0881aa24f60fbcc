//! `tailsift policy|seed|cluster`: one admin API call each through [`tailsift_admin_client`];
//! the JSON answer is printed on stdout, an error status is an error carrying the server's
//! message (with an invalid policy's `issues` printed on stderr).

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;
use tailsift_admin_client::{AdminClient, ClientError, ClientOptions, PolicyDocument};

use crate::cli::{
    AdminCommand, AdminConnection, CaptureArgs, CaptureCommand, ClusterCommand, PolicyCommand, SeedCommand, WhatifArgs,
};

const DEFAULT_ADMIN: &str = "http://127.0.0.1:9710";

impl<C: Subcommand> AdminCommand<C> {
    fn client(&self) -> anyhow::Result<AdminClient> {
        self.conn.client()
    }
}

impl AdminConnection {
    fn client(&self) -> anyhow::Result<AdminClient> {
        let o = ClientOptions {
            base_url: self.admin.clone().unwrap_or_else(|| DEFAULT_ADMIN.to_string()),
            token: self.token.clone(),
            ca_file: self.ca_file.clone(),
            timeout: self.timeout,
        };
        AdminClient::new(&o).map_err(|e| match e {
            ClientError::Read { path, source } => {
                anyhow::Error::new(source).context(format!("reading --ca-file {}", path.display()))
            }
            e => e.into(),
        })
    }
}

pub fn policy(a: AdminCommand<PolicyCommand>) -> anyhow::Result<()> {
    // Offline: no coordinator needed.
    match &a.command {
        PolicyCommand::Validate(f) if a.conn.admin.is_none() => return validate_offline(&f.file, f.format.as_deref()),
        PolicyCommand::Test { file, cases, format } => return test_offline(file, cases, format.as_deref()),
        PolicyCommand::Whatif(w) => return whatif(&a, w),
        _ => {}
    }
    let client = a.client()?;
    // The admin API's format names; the CLI accepts the short forms too (as offline).
    let read = |file: &std::path::Path, format: Option<&str>| -> anyhow::Result<PolicyDocument> {
        let mut doc = PolicyDocument::read(file, None)?;
        doc.format = match policy_format(format)? {
            None => None,
            Some(tailsift_policy::PolicyFormat::Native) if doc.document.trim_start().starts_with('{') => Some("json"),
            Some(tailsift_policy::PolicyFormat::Native) => Some("yaml"),
            Some(tailsift_policy::PolicyFormat::OtelTailSampling) => Some("otel_tail_sampling"),
            Some(tailsift_policy::PolicyFormat::RefineryRules) => Some("refinery_rules"),
        }
        .map(str::to_string);
        Ok(doc)
    };
    let doc = match &a.command {
        PolicyCommand::Apply(f) => Some(PolicyDocument {
            note: f.note.clone(),
            ..read(&f.file, f.format.as_deref())?
        }),
        PolicyCommand::Validate(f) => Some(read(&f.file, f.format.as_deref())?),
        PolicyCommand::Shadow {
            file: Some(file),
            format,
            ..
        } => Some(read(file, format.as_deref())?),
        _ => None,
    };
    // Promote what is the shadow now (the server refuses if it changes before the write).
    let promote_revision = match &a.command {
        PolicyCommand::Shadow { promote: true, .. } => {
            let shadow = crate::runtime()?.block_on(client.get_shadow())?;
            Some(
                shadow
                    .pointer("/shadow/revision")
                    .and_then(Value::as_u64)
                    .context("no shadow policy is set: nothing to promote")?,
            )
        }
        _ => None,
    };
    run(async move {
        let doc = || doc.as_ref().expect("read above");
        match &a.command {
            PolicyCommand::Get => client.get_policy().await,
            PolicyCommand::History => client.history().await,
            PolicyCommand::Apply(_) => client.put_policy(doc()).await,
            PolicyCommand::Validate(_) => client.validate_policy(doc()).await,
            PolicyCommand::Rollback { target } => client.rollback(*target).await,
            PolicyCommand::Shadow { file: Some(_), .. } => client.put_shadow(doc()).await,
            PolicyCommand::Shadow { clear: true, .. } => client.delete_shadow().await,
            PolicyCommand::Shadow { promote: true, .. } => client.promote_shadow(promote_revision.unwrap_or(0)).await,
            PolicyCommand::Shadow { .. } => client.get_shadow().await,
            PolicyCommand::Test { .. } | PolicyCommand::Whatif(_) => unreachable!("run above"),
        }
    })
}

pub fn seed(a: AdminCommand<SeedCommand>) -> anyhow::Result<()> {
    let client = a.client()?;
    run(async move {
        match a.command {
            SeedCommand::Rotate => client.rotate_seed().await,
        }
    })
}

pub fn cluster(a: AdminCommand<ClusterCommand>) -> anyhow::Result<()> {
    let client = a.client()?;
    let settings = match &a.command {
        ClusterCommand::Settings { file: Some(f) } => {
            let text = std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            let v: Value = serde_yaml::from_str(&text).with_context(|| format!("parsing {}", f.display()))?;
            Some(v)
        }
        _ => None,
    };
    run(async move {
        match &a.command {
            ClusterCommand::Status => client.cluster_status().await,
            ClusterCommand::Add {
                id,
                raft_addr,
                admin_addr,
            } => client.add_member(*id, raft_addr, admin_addr).await,
            ClusterCommand::Remove { node } => client.remove_member(*node).await,
            ClusterCommand::Settings { .. } => match &settings {
                Some(s) => client.put_settings(s).await,
                None => client.get_settings().await,
            },
        }
    })
}

/// `tailsift capture`: start one (`--match`/`--policy`, `--since`), or `list`, `status`, `cancel`.
pub fn capture(a: CaptureArgs) -> anyhow::Result<()> {
    let client = a.conn.client()?;
    let s = &a.start;
    if a.command.is_some() && (s.condition.is_some() || s.policy.is_some() || s.since.is_some() || s.until.is_some()) {
        anyhow::bail!("--match, --policy, --since and --until start a capture: not with list, status or cancel");
    }
    let (id, wait) = match &a.command {
        Some(CaptureCommand::List) => return run(async move { client.captures().await }),
        Some(CaptureCommand::Cancel { id }) => {
            let id = *id;
            return run(async move { client.cancel_capture(id).await });
        }
        Some(CaptureCommand::Status { id, wait }) => (*id, *wait),
        None => {
            let s = &a.start;
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64;
            let since = s.since.context(
                "--since is required to start a capture (e.g. --since 20m); or use list, status ID, cancel ID",
            )?;
            let mut body = serde_json::json!({ "since_unix_ms": since.unix_ms(now_ms) });
            if let Some(u) = s.until {
                body["until_unix_ms"] = u.unix_ms(now_ms).into();
            }
            if let Some(d) = &s.description {
                body["description"] = d.clone().into();
            }
            match (&s.condition, &s.policy) {
                (Some(c), _) => body["match"] = c.clone().into(),
                (None, Some(file)) => {
                    let mut doc = PolicyDocument::read(file, None)?;
                    doc.format = policy_format(s.format.as_deref())?.map(|f| match f {
                        tailsift_policy::PolicyFormat::Native => "yaml".to_string(),
                        f => f.as_str().to_string(),
                    });
                    body["policy"] = serde_json::to_value(&doc)?;
                }
                (None, None) => {
                    anyhow::bail!("give --match CONDITION or --policy FILE (or list, status ID, cancel ID)")
                }
            }
            let started = crate::runtime()?.block_on(client.start_capture(&body));
            let started = match started {
                Ok(v) => v,
                Err(e) => return run(async { Err(e) }),
            };
            if !s.wait {
                println!("{}", serde_json::to_string_pretty(&started)?);
                return Ok(());
            }
            eprintln!("{}", serde_json::to_string_pretty(&started)?);
            (started["id"].as_u64().context("POST /v1/captures: no id")?, true)
        }
    };
    if !wait {
        return run(async move { client.capture(id).await });
    }
    let rt = crate::runtime()?;
    loop {
        let status = rt.block_on(client.capture(id))?;
        let state = status["state"].as_str().unwrap_or("").to_string();
        if state != "running" {
            println!("{}", serde_json::to_string_pretty(&status)?);
            return Ok(());
        }
        eprintln!(
            "capture {id}: {} of {} partitions recorded, {} traces exported, {} in progress",
            status["done"].as_object().map_or(0, |d| d.len()),
            status["partitions"].as_i64().map_or("?".to_string(), |n| n.to_string()),
            status["total"]["traces_exported"],
            status["in_progress"].as_array().map_or(0, |p| p.len()),
        );
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

/// `tailsift policy whatif --on-workers`: the replay runs on the workers; prints the report.
fn whatif_on_workers(
    a: &AdminCommand<PolicyCommand>,
    w: &WhatifArgs,
    format: tailsift_policy::PolicyFormat,
) -> anyhow::Result<()> {
    let client = a.client()?;
    let mut doc = PolicyDocument::read(&w.file, None)?;
    doc.format = Some(match format {
        tailsift_policy::PolicyFormat::Native if doc.document.trim_start().starts_with('{') => "json".to_string(),
        tailsift_policy::PolicyFormat::Native => "yaml".to_string(),
        f => f.as_str().to_string(),
    });
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let rt = crate::runtime()?;
    let started =
        rt.block_on(client.start_whatif(&doc, w.since.unix_ms(now_ms), w.until.map(|u| u.unix_ms(now_ms))))?;
    let id = started["id"].as_u64().context("POST /v1/policy/whatif: no id")?;
    let deadline = std::time::Instant::now() + w.max_time;
    loop {
        let status = rt.block_on(client.whatif(id))?;
        if status["state"] != "running" || std::time::Instant::now() >= deadline {
            println!("{}", serde_json::to_string_pretty(&status)?);
            return Ok(());
        }
        eprintln!(
            "what-if {id}: {} of {} partitions reported",
            status["partitions_done"],
            status["partitions"].as_i64().map_or("?".to_string(), |n| n.to_string())
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn policy_format(name: Option<&str>) -> anyhow::Result<Option<tailsift_policy::PolicyFormat>> {
    name.map(|n| {
        tailsift_policy::PolicyFormat::from_name(n)
            .ok_or_else(|| anyhow::anyhow!("unknown --format `{n}`: native, otel_tail_sampling or refinery_rules"))
    })
    .transpose()
}

/// `tailsift policy validate FILE` without --admin: parse and compile as a sampler would.
fn validate_offline(file: &std::path::Path, format: Option<&str>) -> anyhow::Result<()> {
    use tailsift_sampler::policy_test::{compile_file, PolicyTestError};
    match compile_file(file, policy_format(format)?) {
        Ok((engine, format)) => {
            let answer = serde_json::json!({
                "valid": true,
                "format": format.as_str(),
                "policies": engine.policy_names().collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(())
        }
        Err(PolicyTestError::Policy { path, source }) => {
            let issues: Vec<Value> = source
                .issues()
                .iter()
                .map(|i| serde_json::json!({"path": i.path, "message": i.message}))
                .collect();
            eprintln!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "valid": false, "issues": issues }))?
            );
            Err(anyhow::anyhow!("{}: invalid policy: {source}", path.display()))
        }
        Err(e) => Err(e.into()),
    }
}

/// `tailsift policy test FILE CASES`: one line per decided trace, then a summary.
fn test_offline(file: &std::path::Path, cases: &std::path::Path, format: Option<&str>) -> anyhow::Result<()> {
    let results = tailsift_sampler::policy_test::run(file, policy_format(format)?, cases)?;
    let failed = results.iter().filter(|r| !r.passed()).count();
    for r in &results {
        let got = format!("keep={} policy={}", r.keep, r.policy.as_deref().unwrap_or("none"));
        if r.passed() {
            println!("ok    {} [{}] {got}", r.case, r.trace_id);
        } else {
            let want = format!(
                "keep={}{}",
                r.expect.keep,
                r.expect
                    .policy
                    .as_deref()
                    .map(|p| format!(" policy={p}"))
                    .unwrap_or_default()
            );
            println!("FAIL  {} [{}] expected {want}, got {got}", r.case, r.trace_id);
        }
    }
    println!("{} passed, {failed} failed", results.len() - failed);
    if failed > 0 {
        anyhow::bail!("{failed} of {} policy test cases failed", results.len());
    }
    Ok(())
}

/// `tailsift policy whatif FILE --since 30m`: the candidate and the live policy (from --live or
/// the admin API) over a window of the spans topic; prints the report
/// ([`tailsift_sampler::whatif`]).
fn whatif(a: &AdminCommand<PolicyCommand>, w: &WhatifArgs) -> anyhow::Result<()> {
    use tailsift_sampler::policy_test::compile_file;
    use tailsift_sampler::whatif;
    let (candidate, candidate_format) = compile_file(&w.file, policy_format(w.format.as_deref())?)?;
    if w.on_workers {
        return whatif_on_workers(a, w, candidate_format);
    }
    let (live, live_seed) = match &w.live {
        Some(file) => (compile_file(file, policy_format(w.live_format.as_deref())?)?.0, 0),
        None => {
            let client = a.client()?;
            let answer = crate::runtime()?
                .block_on(client.get_policy())
                .context("reading the live policy (or give --live FILE --seed N)")?;
            whatif::live_from_policy_answer(&answer).map_err(anyhow::Error::msg)?
        }
    };
    let seed = w.seed.unwrap_or(live_seed);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let window = whatif::KafkaWindow {
        connection: whatif::Connection {
            brokers: w.kafka_brokers.clone(),
            client_id: "tailsift-whatif".into(),
            properties: w.kafka_properties.iter().cloned().collect(),
        },
        topic: w.topic.clone(),
        since_unix_ms: w.since.unix_ms(now_ms),
        until_unix_ms: w.until.map(|u| u.unix_ms(now_ms)),
        lookback_records: w.resume_lookback_records,
        quiet: w.quiet,
        timeout: w.max_time,
        partitions: None,
        stop: None,
    };
    let limits = whatif::Limits {
        max_traces: w.max_traces,
        max_bytes: w.max_bytes,
        ..Default::default()
    };
    let report = whatif::replay_kafka(&window, whatif::Replay::new(candidate, live, seed, limits))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// Runs the call and prints its answer.
fn run(call: impl std::future::Future<Output = Result<Value, ClientError>>) -> anyhow::Result<()> {
    match crate::runtime()?.block_on(call) {
        Ok(answer) => {
            println!("{}", serde_json::to_string_pretty(&answer)?);
            Ok(())
        }
        Err(ClientError::Read { path, source }) => {
            Err(anyhow::Error::new(source).context(format!("reading {}", path.display())))
        }
        Err(e) => {
            if let ClientError::Api { body: Some(b), .. } = &e {
                if b.get("issues").is_some() {
                    eprintln!("{}", serde_json::to_string_pretty(b)?);
                }
            }
            Err(e.into())
        }
    }
}
