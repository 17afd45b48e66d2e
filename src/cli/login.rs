use super::{Context, RegistryArgs};
use anyhow::{Context as _, Result, bail};
use clap::Args;
use skiff::auth::Credential;
use skiff::auth::sources::AuthEnv;
use skiff::registry::login;
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
    let Some(username) = a.username else {
        bail!("--username is required (no terminal prompt is offered)")
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the password from standard input")?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else {
        a.password
            .context("--password or --password-stdin is required")?
    };
    let cred = Credential::basic(&username, &password);
    let settings = a.registry_args.resolve()?;
    let file = login::login(
        &a.registry,
        &cred,
        &settings.auth,
        &settings.registries,
        settings.client,
    )
    .await?;
    eprintln!("Login Succeeded! (stored in {})", file.display());
    Ok(())
}

pub fn logout(_ctx: &Context, a: LogoutArgs) -> Result<()> {
    if !a.all && a.registry.is_none() {
        bail!("name a registry, or use --all")
    }
    let registry = a.registry.as_deref().filter(|_| !a.all);
    match login::logout(&AuthEnv::from_process(a.authfile), registry)? {
        Some(key) => eprintln!("Removed login credentials for {key}"),
        None => eprintln!("Removed login credentials for all registries"),
    }
    Ok(())
}
