//! The shell of `ferrolb` and `kubectl-ferrolb`: flags, reading files, stdin and the live
//! cluster, writing the output and the loss report. The conversion itself is the library's.

mod live;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use ferrolb_migrate::{
    FERROLB_NAMESPACE, InputObject, METALLB_NAMESPACE, Options, convert, output, parse_yaml,
};

/// Exit code when something does not carry over and `--allow-loss` was not given.
const EXIT_LOSS: u8 = 3;

/// FerroLB's command-line tools.
#[derive(Debug, Parser)]
#[command(name = "ferrolb", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Convert MetalLB's configuration (metallb.io objects or its legacy ConfigMap) to
    /// ferrolb.io objects, listing on stderr everything that cannot carry over.
    ///
    /// Exit codes: 0 converted (with --allow-loss, possibly with losses); 1 error (bad input,
    /// unreadable file or cluster); 2 bad flags; 3 something does not carry over and
    /// --allow-loss was not given (then nothing is written).
    Migrate(MigrateArgs),
}

#[derive(Debug, clap::Args)]
struct MigrateArgs {
    /// A MetalLB manifest (multi-document YAML, `kind: List`, or the legacy ConfigMap, whole
    /// or its `config` data only), a directory of them (*.yaml, *.yml, *.json), or - for
    /// stdin. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-")]
    filenames: Vec<PathBuf>,

    /// Read MetalLB's objects in --from-namespace, its legacy ConfigMap `config`, and the
    /// Secrets its BGPPeers name, from the live cluster.
    #[arg(long)]
    from_cluster: bool,

    /// Kubeconfig for --from-cluster (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,

    /// Kubeconfig context for --from-cluster (default: the current one).
    #[arg(long)]
    context: Option<String>,

    /// The namespace MetalLB runs in; objects elsewhere are reported, not converted.
    #[arg(long, default_value = METALLB_NAMESPACE)]
    from_namespace: String,

    /// FerroLB's namespace: where the converted objects and copied Secrets go.
    #[arg(long, default_value = FERROLB_NAMESPACE)]
    namespace: String,

    /// Write one file per object into this directory (created if missing) instead of stdout.
    #[arg(short = 'o', long, value_name = "DIR")]
    output_dir: Option<PathBuf>,

    /// Write the output even when something does not carry over (and exit 0).
    #[arg(long)]
    allow_loss: bool,
}

/// Runs the command line; `kubectl-ferrolb` names itself `kubectl ferrolb` in help.
pub fn main() -> ExitCode {
    let as_plugin = std::env::args_os()
        .next()
        .and_then(|arg0| {
            Path::new(&arg0)
                .file_name()
                .map(|n| n.to_string_lossy().starts_with("kubectl-"))
        })
        .unwrap_or(false);
    let mut command = Cli::command();
    if as_plugin {
        command = command.bin_name("kubectl ferrolb");
    }
    let cli = match Cli::from_arg_matches(&command.get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let Command::Migrate(args) = cli.command;
    match migrate(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn migrate(args: &MigrateArgs) -> Result<ExitCode> {
    if args.filenames.is_empty() && !args.from_cluster {
        bail!("nothing to convert: give -f FILE|DIR|- or --from-cluster");
    }
    let options = Options {
        from_namespace: args.from_namespace.clone(),
        namespace: args.namespace.clone(),
    };
    let mut inputs = Vec::new();
    for path in &args.filenames {
        inputs.extend(read_path(path)?);
    }
    if args.from_cluster {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let (objects, notes) = runtime.block_on(live::fetch(
            args.kubeconfig.as_deref(),
            args.context.as_deref(),
            &options,
        ))?;
        for note in notes {
            eprintln!("note: {note}");
        }
        inputs.extend(objects);
    }
    let conversion = convert(&inputs, &options)?;
    for note in &conversion.notes {
        eprintln!("note: {note}");
    }
    for loss in &conversion.losses {
        eprintln!("loss: {loss}");
    }
    let losses = conversion.losses.len();
    if losses > 0 && !args.allow_loss {
        eprintln!(
            "{losses} item(s) above do not carry over: nothing written. Review them, then run \
             again with --allow-loss to write the {} converted object(s).",
            conversion.objects.len()
        );
        return Ok(ExitCode::from(EXIT_LOSS));
    }
    match &args.output_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let files = output::files(&conversion.objects);
            for (name, text) in &files {
                let path = dir.join(name);
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            eprintln!("wrote {} file(s) to {}", files.len(), dir.display());
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(output::render(&conversion.objects).as_bytes())
                .and_then(|()| stdout.flush())
                .context("writing to stdout")?;
        }
    }
    if losses > 0 {
        eprintln!("converted with {losses} loss(es), as --allow-loss allows");
    }
    Ok(ExitCode::SUCCESS)
}

/// The inputs in a file, in each manifest of a directory (sorted by name, not recursive), or
/// on stdin for `-`.
fn read_path(path: &Path) -> Result<Vec<InputObject>> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        return Ok(parse_yaml("-", &text)?);
    }
    if path.is_dir() {
        let mut files = Vec::new();
        for entry in
            std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))?
        {
            let file = entry?.path();
            let manifest = file
                .extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml" || ext == "json");
            if manifest && file.is_file() {
                files.push(file);
            }
        }
        files.sort();
        let mut inputs = Vec::new();
        for file in files {
            inputs.extend(read_path(&file)?);
        }
        return Ok(inputs);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(parse_yaml(&path.display().to_string(), &text)?)
}
