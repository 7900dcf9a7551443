//! `samizdat vault …` subcommands (owned by the vault work; placeholder until it lands).

/// Arguments of `samizdat vault`.
#[derive(clap::Args, Debug)]
pub struct VaultArgs {}

/// Runs a vault subcommand.
pub fn run(_args: VaultArgs, _json: bool) -> anyhow::Result<()> {
    anyhow::bail!("vault commands are not built yet")
}
