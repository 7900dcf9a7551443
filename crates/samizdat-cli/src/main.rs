//! The `samizdat` command-line tool and node daemon.

mod vault_cmd;

use clap::{Parser, Subcommand};

/// Censorship-resistant, anonymous peer-to-peer file sharing.
#[derive(Parser, Debug)]
#[command(name = "samizdat", version, about)]
struct Cli {
    /// Print machine-readable JSON instead of human text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Deniable encrypted storage: containers with hidden volumes.
    Vault(vault_cmd::VaultArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Vault(args) => vault_cmd::run(args, cli.json),
    };
    if let Err(err) = result {
        if cli.json {
            println!("{}", serde_json::json!({ "ok": false, "error": format!("{err:#}") }));
        } else {
            eprintln!("samizdat: {err:#}");
        }
        std::process::exit(1);
    }
}
