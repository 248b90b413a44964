use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "imagestream-operator", version, about = "OpenShift-style image streams for Kubernetes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinition YAML generated from the API types.
    Crds,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds => print!("{}", imagestream_operator::crdgen::imagestream_crd_yaml()?),
    }
    Ok(())
}
