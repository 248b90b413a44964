//! The operator's logs. Registry answers, stream fields and notification payloads are logged as
//! fields; in the text format a newline inside one would forge a log line and an escape
//! sequence would reach whoever tails the log. The writer escapes every control character of a
//! formatted line but its final newline (the JSON format escapes them already).

use std::io::Write;

use tracing_subscriber::fmt::MakeWriter;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the process's subscriber: level from RUST_LOG (default info), no colour codes.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::new(directives(std::env::var("RUST_LOG").ok()));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_writer(Escaped(std::io::stdout)).init(),
    }
}

/// RUST_LOG (default `info`), with rustls silenced unless it names rustls: rustls logs every
/// failed handshake with a tenant's registry at ERROR, while the import already reports it
/// where the tenant sees it (the tag's condition and an Event) and in the operator's own line.
fn directives(rust_log: Option<String>) -> String {
    let given = rust_log.filter(|d| !d.trim().is_empty());
    let base = given.unwrap_or_else(|| "info".into());
    match base.contains("rustls") {
        true => base,
        false => format!("{base},rustls=off"),
    }
}

/// Makes writers that escape control characters before they reach `W`.
#[derive(Clone, Copy)]
pub struct Escaped<M>(pub M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Escaped<M> {
    type Writer = EscapedWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        EscapedWriter(self.0.make_writer())
    }
}

pub struct EscapedWriter<W>(W);

impl<W: Write> Write for EscapedWriter<W> {
    /// The formatter hands over one whole line per event; it is escaped and written at once.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(&escape_line(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `line` with every control byte but a trailing newline written as `\n`, `\r`, `\t` or
/// `\xNN`; bytes of multi-byte UTF-8 characters are kept, C1 controls escaped.
pub fn escape_line(line: &[u8]) -> Vec<u8> {
    let (body, end) = match line.strip_suffix(b"\n") {
        Some(body) => (body, &b"\n"[..]),
        None => (line, &b""[..]),
    };
    let text = String::from_utf8_lossy(body);
    let mut out = String::with_capacity(text.len() + 1);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(end);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_is_silent_unless_asked_for() {
        assert_eq!(directives(None), "info,rustls=off");
        assert_eq!(directives(Some(" ".into())), "info,rustls=off");
        assert_eq!(directives(Some("debug".into())), "debug,rustls=off");
        assert_eq!(
            directives(Some("info,rustls=debug".into())),
            "info,rustls=debug"
        );
    }
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A registry's message with a newline and a forged line, and an OSC title sequence, stays
    /// on its own line in the text log, with the escapes visible.
    #[test]
    fn a_registry_message_cannot_forge_a_line_or_reach_the_terminal() {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(Escaped(move || sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let message =
                "denied\n2026-12-02T00:00:00Z  INFO imagestream: all good\x1b]0;owned\x07";
            tracing::warn!(error = %message, "import failed");
        });
        let logged = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        assert_eq!(logged.lines().count(), 1, "{logged}");
        assert!(logged.contains("denied\\n2026-12-02"), "{logged}");
        assert!(logged.contains("\\x1b]0;owned\\x07"), "{logged}");
        assert!(!logged.contains('\x1b'));
    }

    #[test]
    fn plain_lines_are_unchanged() {
        assert_eq!(escape_line(b"a \xc3\xa9 b\n"), "a é b\n".as_bytes());
        assert_eq!(escape_line(b"x\x00y"), b"x\\x00y");
    }
}
