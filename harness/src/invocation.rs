//! One run of an external tool (docker, kind, istioctl): what the dry run prints, what the logs
//! show, and what the harness runs, built from the same value so that the three never differ.
//!
//! Every run is bounded: a tool that outlives its timeout is killed, and so is a tool whose
//! run is dropped (Ctrl-C drops the whole walk).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};

/// A program, its arguments, and variables set in its environment only (never in ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl Invocation {
    pub fn new(program: impl Into<PathBuf>, args: Vec<String>) -> Self {
        Self {
            program: program.into(),
            args,
            env: Vec::new(),
        }
    }

    /// Sets `key=value` in the child's environment.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// The full argv, program first.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .collect()
    }

    /// The command line as a shell would take it, environment first.
    pub fn display(&self) -> String {
        self.env
            .iter()
            .map(|(k, v)| format!("{k}={}", quote(v)))
            .chain(self.argv().iter().map(|a| quote(a)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs the tool, at most `timeout`, and returns its stdout. With `log`, stdout and stderr
    /// go to that file instead (for long, chatty runs) and the result is empty. A failure's
    /// error holds the command line and the last lines the tool printed.
    pub async fn run(&self, timeout: Duration, log: Option<&Path>) -> anyhow::Result<String> {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(log) = log {
            if let Some(dir) = log.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let mut file = std::fs::File::create(log)
                .with_context(|| format!("creating {}", log.display()))?;
            use std::io::Write;
            writeln!(file, "$ {}", self.display())?;
            command
                .stdout(Stdio::from(file.try_clone()?))
                .stderr(Stdio::from(file));
        } else {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        tracing::debug!("running {}", self.display());
        let child = command.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!("`{}` is not installed: {e}", self.program.display())
            } else {
                anyhow::anyhow!("starting `{}`: {e}", self.display())
            }
        })?;
        let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
            Ok(output) => output.with_context(|| format!("waiting for `{}`", self.display()))?,
            // Dropping the child on the way out kills it (`kill_on_drop`).
            Err(_) => bail!(
                "`{}` did not finish within {}{}",
                self.display(),
                humantime::format_duration(timeout),
                log.map(|l| format!(" (its output: {})", l.display()))
                    .unwrap_or_default()
            ),
        };
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            let printed = match log {
                Some(log) => std::fs::read_to_string(log).unwrap_or_default(),
                None => format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)),
            };
            bail!(
                "`{}` failed ({}){}{}",
                self.display(),
                output.status,
                tail(&printed, 15),
                log.map(|l| format!("\n  full output: {}", l.display()))
                    .unwrap_or_default()
            );
        }
        Ok(stdout)
    }
}

/// The last `n` non-empty lines of `text`, indented, after a colon; empty if there are none.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return String::new();
    }
    let start = lines.len().saturating_sub(n);
    let mut out = String::from(":");
    for line in &lines[start..] {
        out.push_str("\n    ");
        out.push_str(line);
    }
    out
}

/// Quotes a word for a POSIX shell when it needs it.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%^".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("kind", "kind")]
    #[case("--wait=180s", "--wait=180s")]
    #[case("kindest/node:v1@sha256:ab", "kindest/node:v1@sha256:ab")]
    #[case("{{.ServerVersion}}", "'{{.ServerVersion}}'")]
    #[case("components[0].x=1", "'components[0].x=1'")]
    #[case("it's", r"'it'\''s'")]
    #[case("", "''")]
    fn words_are_quoted_only_when_needed(#[case] word: &str, #[case] quoted: &str) {
        assert_eq!(quote(word), quoted);
    }

    #[test]
    fn the_display_puts_the_environment_first() {
        let run = Invocation::new("kind", vec!["get".into(), "clusters".into()])
            .env("KUBECONFIG", "/tmp/a b");
        assert_eq!(run.display(), "KUBECONFIG='/tmp/a b' kind get clusters");
        assert_eq!(run.argv(), ["kind", "get", "clusters"]);
    }

    #[tokio::test]
    async fn output_env_failure_and_timeout() {
        let run = Invocation::new("sh", vec!["-c".into(), "echo \"$X\"".into()]).env("X", "hi");
        assert_eq!(
            run.run(Duration::from_secs(10), None).await.unwrap(),
            "hi\n"
        );

        let run = Invocation::new("sh", vec!["-c".into(), "echo oops >&2; exit 3".into()]);
        let err = run.run(Duration::from_secs(10), None).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("failed") && msg.contains("oops"), "{msg}");

        let run = Invocation::new("sleep", vec!["30".into()]);
        let err = run.run(Duration::from_millis(200), None).await.unwrap_err();
        assert!(err.to_string().contains("did not finish within"), "{err}");

        let run = Invocation::new("/nonexistent/tool", vec![]);
        let err = run.run(Duration::from_secs(1), None).await.unwrap_err();
        assert!(err.to_string().contains("is not installed"), "{err}");
    }

    #[tokio::test]
    async fn a_logged_run_keeps_its_output_in_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs/step.log");
        let run = Invocation::new(
            "sh",
            vec!["-c".into(), "echo out; echo err >&2; exit 1".into()],
        );
        let err = run
            .run(Duration::from_secs(10), Some(&log))
            .await
            .unwrap_err();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.starts_with("$ sh -c "), "{text}");
        assert!(text.contains("out") && text.contains("err"), "{text}");
        let msg = err.to_string();
        assert!(
            msg.contains("err") && msg.contains(&log.display().to_string()),
            "{msg}"
        );
    }
}
