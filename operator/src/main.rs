//! The `dolphin-operator` command.

use clap::{Parser, Subcommand};

/// Reconciles ImCluster resources into running Dolphin clusters.
#[derive(Debug, Parser)]
#[command(name = "dolphin-operator", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints the ImCluster CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            let yaml = dolphin_operator::crd_yaml()?;
            #[allow(clippy::print_stdout, reason = "the YAML is this command's output")]
            {
                print!("{yaml}");
            }
            Ok(())
        }
    }
}
