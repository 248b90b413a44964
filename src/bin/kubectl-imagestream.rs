//! `kubectl imagestream …` (a kubectl plugin when on PATH). See `imagestream_operator::cli`.

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let code = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(imagestream_operator::cli::main()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            1
        }
    };
    std::process::exit(code);
}
