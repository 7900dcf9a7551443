//! `samizdat vault …`: deniable encrypted containers with hidden volumes.
//!
//! Passwords are read from the terminal without echo, or from the first line of a file given
//! with `--password-file` (for scripts). Every write is one atomic commit.

use std::fs::File;
use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use samizdat_vault::{OpenOptions, Vault};
use zeroize::Zeroizing;

/// Files from this size up get a progress bar when stored (on a terminal, without --json).
const BAR_FROM: u64 = 16 << 20;

/// Arguments of `samizdat vault`.
#[derive(clap::Args, Debug)]
pub struct VaultArgs {
    #[command(subcommand)]
    command: VaultCommand,
}

/// Where a password comes from.
#[derive(clap::Args, Debug)]
struct PasswordArg {
    /// Read the volume password from the first line of this file instead of the terminal.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

/// What to do when another process has the container open.
#[derive(clap::Args, Debug)]
pub(crate) struct WaitArg {
    /// If another process (a `samizdat node --vault`, another vault command) has the
    /// container open, wait until it closes it instead of failing at once.
    #[arg(long)]
    pub(crate) wait: bool,
}

/// Extra passwords whose volumes a write must not touch (protected mode).
#[derive(clap::Args, Debug)]
struct ProtectArg {
    /// Protected mode: also open the volume of the password in FILE (repeatable) read-only,
    /// so that this write never lands on its blocks. Use it when writing to a decoy.
    #[arg(long, value_name = "FILE")]
    protect_password_file: Vec<PathBuf>,
}

#[derive(clap::Subcommand, Debug)]
enum VaultCommand {
    /// Create a container filled with random bytes, and its first volume.
    Create {
        /// Container file to create (must not exist).
        path: PathBuf,
        /// Container size, e.g. 64MiB, 1GiB, 500MB or a byte count.
        #[arg(long, value_parser = crate::size::parse_size)]
        size: u64,
        #[command(flatten)]
        password: PasswordArg,
    },
    /// Add a new, more hidden volume nested on the volume of the parent password.
    ///
    /// The new volume goes into the header slot above the parent's, replacing any volume
    /// already there, and nothing in the container can tell whether one is (that is what makes
    /// hidden volumes undetectable). So it refuses unless --replace-hidden is given: give the
    /// password of the most hidden volume you have as the parent.
    AddVolume {
        /// Container file.
        path: PathBuf,
        /// Read the parent (existing) volume's password from the first line of this file.
        #[arg(long, value_name = "FILE")]
        parent_password_file: Option<PathBuf>,
        /// Confirm that the parent is the most hidden volume: a volume above it, if there is
        /// one, is destroyed.
        #[arg(long)]
        replace_hidden: bool,
        #[command(flatten)]
        password: PasswordArg,
        #[command(flatten)]
        wait: WaitArg,
    },
    /// Store a file (streamed; replaces a file of the same name).
    Put {
        /// Container file.
        path: PathBuf,
        /// File to store, or - for standard input (then --name is required).
        file: PathBuf,
        /// Name in the vault (default: the file's base name).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        password: PasswordArg,
        #[command(flatten)]
        protect: ProtectArg,
        #[command(flatten)]
        wait: WaitArg,
    },
    /// Read a stored file.
    Get {
        /// Container file.
        path: PathBuf,
        /// Name in the vault.
        name: String,
        /// Output file, or - for standard output.
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: PathBuf,
        #[command(flatten)]
        password: PasswordArg,
        #[command(flatten)]
        wait: WaitArg,
    },
    /// List the files of the volume.
    Ls {
        /// Container file.
        path: PathBuf,
        #[command(flatten)]
        password: PasswordArg,
        #[command(flatten)]
        wait: WaitArg,
    },
    /// Delete a file (its key is destroyed and its blocks overwritten with random bytes).
    Rm {
        /// Container file.
        path: PathBuf,
        /// Name in the vault.
        name: String,
        #[command(flatten)]
        password: PasswordArg,
        #[command(flatten)]
        protect: ProtectArg,
        #[command(flatten)]
        wait: WaitArg,
    },
    /// Rename a file.
    Mv {
        /// Container file.
        path: PathBuf,
        /// Current name.
        from: String,
        /// New name (must not exist).
        to: String,
        #[command(flatten)]
        password: PasswordArg,
        #[command(flatten)]
        protect: ProtectArg,
        #[command(flatten)]
        wait: WaitArg,
    },
}

pub(crate) type Password = Zeroizing<String>;

/// Reads the first line of a password file.
fn password_from_file(path: &Path) -> anyhow::Result<Password> {
    let file =
        File::open(path).with_context(|| format!("opening password file {}", path.display()))?;
    let mut line = Zeroizing::new(String::new());
    BufReader::new(file)
        .read_line(&mut line)
        .with_context(|| format!("reading password file {}", path.display()))?;
    let pw = Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_owned());
    if pw.is_empty() {
        bail!("password file {} has an empty first line", path.display());
    }
    Ok(pw)
}

fn prompt(text: &str) -> anyhow::Result<Password> {
    let pw = Zeroizing::new(
        rpassword::prompt_password(text).context("reading a password from the terminal")?,
    );
    if pw.is_empty() {
        bail!("the password must not be empty");
    }
    Ok(pw)
}

/// The password from `file`, or asked on the terminal (twice if `confirm`).
pub(crate) fn password(
    file: &Option<PathBuf>,
    what: &str,
    confirm: bool,
) -> anyhow::Result<Password> {
    if let Some(f) = file {
        return password_from_file(f);
    }
    let pw = prompt(&format!("{what}: "))?;
    if confirm {
        let again = prompt(&format!("{what} (again): "))?;
        if *pw != *again {
            bail!("the passwords do not match");
        }
    }
    Ok(pw)
}

/// Reads the protected-mode passwords (`--protect-password-file`, repeatable).
pub(crate) fn protect_passwords(files: &[PathBuf]) -> anyhow::Result<Vec<Password>> {
    files.iter().map(|f| password_from_file(f)).collect()
}

/// Opens for writing under the container's exclusive lock (held until the vault is dropped).
fn open_for_write(
    path: &Path,
    pw: &PasswordArg,
    protect: &ProtectArg,
    wait: &WaitArg,
) -> anyhow::Result<Vault> {
    let main = password(&pw.password_file, "Volume password", false)?;
    let others = protect_passwords(&protect.protect_password_file)?;
    let others: Vec<&[u8]> = others.iter().map(|p| p.as_bytes()).collect();
    let options = OpenOptions::new().wait(wait.wait);
    Vault::open_with(path, main.as_bytes(), &others, options)
        .with_context(|| format!("opening {}", path.display()))
}

/// Opens for reading under a shared lock: never during another process's write.
fn open_for_read(path: &Path, pw: &PasswordArg, wait: &WaitArg) -> anyhow::Result<Vault> {
    let main = password(&pw.password_file, "Volume password", false)?;
    let options = OpenOptions::new().read_only(true).wait(wait.wait);
    Vault::open_with(path, main.as_bytes(), &[], options)
        .with_context(|| format!("opening {}", path.display()))
}

/// A byte progress bar on standard error, or a hidden one when `show` is false.
fn bar(show: bool, total: u64, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

/// Whether to draw progress: only for a person watching a terminal.
fn show_progress(json: bool) -> bool {
    !json && io::stderr().is_terminal()
}

/// Counts the bytes read through it on a progress bar.
struct Counted<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

fn say(json: bool, value: serde_json::Value, human: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        let text = human();
        if !text.is_empty() {
            println!("{text}");
        }
    }
}

/// Runs a vault subcommand.
pub fn run(args: VaultArgs, json: bool) -> anyhow::Result<()> {
    match args.command {
        VaultCommand::Create { path, size, password: pw } => {
            let pw = password(&pw.password_file, "New volume password", true)?;
            let bar = bar(show_progress(json), size, "filling with random bytes");
            let vault = Vault::create_with_progress(&path, size, pw.as_bytes(), &mut |done, _| {
                bar.set_position(done);
            });
            bar.finish_and_clear();
            let vault = vault.with_context(|| format!("creating {}", path.display()))?;
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(size);
            say(
                json,
                serde_json::json!({"ok": true, "path": path, "size": bytes, "capacity": vault.capacity()}),
                || format!("created {} ({bytes} bytes)", path.display()),
            );
        }
        VaultCommand::AddVolume {
            path,
            parent_password_file,
            replace_hidden,
            password: pw,
            wait,
        } => {
            if !replace_hidden {
                // Before asking for any password: the answer would be the same.
                return Err(samizdat_vault::VaultError::MayReplaceHidden)
                    .with_context(|| format!("adding a volume to {}", path.display()));
            }
            let parent = password(&parent_password_file, "Existing volume password", false)?;
            let new = password(&pw.password_file, "New hidden volume password", true)?;
            let options = OpenOptions::new().danger_replace_hidden(true).wait(wait.wait);
            Vault::add_volume_with(&path, parent.as_bytes(), new.as_bytes(), options)
                .with_context(|| format!("adding a volume to {}", path.display()))?;
            say(json, serde_json::json!({"ok": true}), || "added a hidden volume".to_owned());
        }
        VaultCommand::Put { path, file, name, password: pw, protect, wait } => {
            let stdin = file.as_os_str() == "-";
            let name = match (name, stdin) {
                (Some(n), _) => n,
                (None, true) => bail!("--name is required when reading standard input"),
                (None, false) => file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .map(str::to_owned)
                    .with_context(|| format!("{} has no usable file name", file.display()))?,
            };
            // Open the input first: a missing file should not cost an Argon2 run.
            let (input, len): (Box<dyn io::Read>, Option<u64>) = if stdin {
                (Box::new(io::stdin().lock()), None)
            } else {
                let f = File::open(&file).with_context(|| format!("opening {}", file.display()))?;
                let len = f.metadata().ok().map(|m| m.len());
                (Box::new(f), len)
            };
            let mut vault = open_for_write(&path, &pw, &protect, &wait)?;
            let large = len.is_some_and(|l| l >= BAR_FROM);
            let bar = bar(large && show_progress(json), len.unwrap_or(0), "storing");
            let input = Counted { inner: input, bar: bar.clone() };
            let stored = vault.put(&name, input);
            bar.finish_and_clear();
            let n = stored.with_context(|| format!("storing {name:?}"))?;
            say(json, serde_json::json!({"ok": true, "name": name, "size": n}), || {
                format!("stored {name:?} ({n} bytes)")
            });
        }
        VaultCommand::Get { path, name, output, password: pw, wait } => {
            let vault = open_for_read(&path, &pw, &wait)?;
            let n = if output.as_os_str() == "-" {
                let mut out = io::stdout().lock();
                let n = vault.get(&name, &mut out).with_context(|| format!("reading {name:?}"))?;
                out.flush().context("writing standard output")?;
                n
            } else {
                get_to_file(&vault, &name, &output)?
            };
            if output.as_os_str() != "-" {
                say(
                    json,
                    serde_json::json!({"ok": true, "name": name, "size": n, "output": output}),
                    || format!("wrote {} ({n} bytes)", output.display()),
                );
            }
        }
        VaultCommand::Ls { path, password: pw, wait } => {
            let vault = open_for_read(&path, &pw, &wait)?;
            let files = vault.list()?;
            let list: Vec<_> =
                files.iter().map(|f| serde_json::json!({"name": f.name, "size": f.size})).collect();
            say(
                json,
                serde_json::json!({"ok": true, "files": list, "free": vault.free_space()}),
                || {
                    files
                        .iter()
                        .map(|f| format!("{:>14}  {}", f.size, f.name))
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            );
        }
        VaultCommand::Rm { path, name, password: pw, protect, wait } => {
            let mut vault = open_for_write(&path, &pw, &protect, &wait)?;
            vault.delete(&name).with_context(|| format!("deleting {name:?}"))?;
            say(json, serde_json::json!({"ok": true, "name": name}), || {
                format!("deleted {name:?}")
            });
        }
        VaultCommand::Mv { path, from, to, password: pw, protect, wait } => {
            let mut vault = open_for_write(&path, &pw, &protect, &wait)?;
            vault.rename(&from, &to).with_context(|| format!("renaming {from:?}"))?;
            say(json, serde_json::json!({"ok": true, "from": from, "to": to}), || {
                format!("renamed {from:?} to {to:?}")
            });
        }
    }
    Ok(())
}

/// Writes a stored file to `output` through a temporary file, so that a failed read (e.g. a
/// tampered block) never leaves a partial output behind.
fn get_to_file(vault: &Vault, name: &str, output: &Path) -> anyhow::Result<u64> {
    let mut tmp = output.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let n = vault.get(name, &mut f).with_context(|| format!("reading {name:?}"))?;
        f.sync_all().with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, output)
            .with_context(|| format!("renaming to {}", output.display()))?;
        Ok(n)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
