//! `tailsift policy|seed|cluster`: one admin API call each through [`tailsift_admin_client`];
//! the JSON answer is printed on stdout, an error status is an error carrying the server's
//! message (with an invalid policy's `issues` printed on stderr).

use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;
use tailsift_admin_client::{AdminClient, ClientError, ClientOptions, PolicyDocument};

use crate::cli::{AdminCommand, ClusterCommand, PolicyCommand, SeedCommand};

impl<C: Subcommand> AdminCommand<C> {
    fn client(&self) -> anyhow::Result<AdminClient> {
        let o = ClientOptions {
            base_url: self.admin.clone(),
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
    let client = a.client()?;
    let read = |file: &std::path::Path, format: Option<&str>| PolicyDocument::read(file, format);
    run(async move {
        match &a.command {
            PolicyCommand::Get => client.get_policy().await,
            PolicyCommand::History => client.history().await,
            PolicyCommand::Apply(f) => client.put_policy(&read(&f.file, f.format.as_deref())?).await,
            PolicyCommand::Validate(f) => client.validate_policy(&read(&f.file, f.format.as_deref())?).await,
            PolicyCommand::Rollback { target } => client.rollback(*target).await,
            PolicyCommand::Shadow {
                file: Some(file),
                format,
                ..
            } => client.put_shadow(&read(file, format.as_deref())?).await,
            PolicyCommand::Shadow { clear: true, .. } => client.delete_shadow().await,
            PolicyCommand::Shadow { .. } => client.get_shadow().await,
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
