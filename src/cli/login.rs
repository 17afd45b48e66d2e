use super::{Context, RegistryArgs};
use anyhow::{Context as _, Result, bail};
use clap::Args;
use skiff::auth::sources::AuthEnv;
use skiff::auth::{Credential, config};
use skiff::registry::login::{login_key, verify};
use std::io::Read as _;

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Registry host[:port], optionally with a namespace (quay.io/org)
    pub registry: String,
    #[arg(long, short)]
    pub username: Option<String>,
    #[arg(long, short)]
    pub password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub registry_args: RegistryArgs,
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    pub registry: Option<String>,
    /// Remove every stored credential in the file
    #[arg(long, short)]
    pub all: bool,
    #[arg(long, env = "REGISTRY_AUTH_FILE")]
    pub authfile: Option<std::path::PathBuf>,
}

pub async fn login(_ctx: &Context, a: LoginArgs) -> Result<()> {
    let key = login_key(&a.registry);
    let username = match a.username {
        Some(u) => u,
        None => bail!("--username is required (no terminal prompt is offered)"),
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the password from standard input")?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else {
        match a.password {
            Some(p) => p,
            None => bail!("--password or --password-stdin is required"),
        }
    };
    let cred = Credential::basic(&username, &password);
    let settings = a.registry_args.resolve()?;
    verify(&key, &cred, &settings.registries, settings.client).await?;
    let file = settings
        .auth
        .login_file()
        .context("no location for the credential file (set --authfile or HOME)")?;
    config::store_credential(&file, &key, &cred)?;
    eprintln!("Login Succeeded! (stored in {})", file.display());
    Ok(())
}

pub fn logout(_ctx: &Context, a: LogoutArgs) -> Result<()> {
    let env = AuthEnv::from_process(a.authfile.clone());
    let file = env.login_file().context("no credential file location")?;
    if a.all {
        if file.exists() {
            std::fs::remove_file(&file).with_context(|| format!("removing {}", file.display()))?;
        }
        eprintln!("Removed login credentials for all registries");
        return Ok(());
    }
    let Some(reg) = a.registry else {
        bail!("name a registry, or use --all")
    };
    let key = login_key(&reg);
    if config::remove_credential(&file, &key)? {
        eprintln!("Removed login credentials for {key}");
        Ok(())
    } else {
        bail!("not logged into {key} (in {})", file.display())
    }
}
