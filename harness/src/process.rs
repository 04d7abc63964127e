//! Child processes that never outlive the harness.
//!
//! Each child is killed and reaped when its guard drops (success, error or a cancelled task on
//! Ctrl-C), and on Linux it also gets SIGKILL from the kernel if the harness itself dies
//! (`PR_SET_PDEATHSIG`), so not even a `kill -9` of the harness leaks a proxy or a backend.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

/// A running child process, killed on drop.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Starts `command`, asking the kernel to kill it when the harness dies.
    pub fn spawn(name: &str, mut command: Command) -> anyhow::Result<Self> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            unsafe {
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
        Ok(Self {
            name: name.to_string(),
            child: Some(child),
        })
    }

    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Fails if the process has already exited, saying how.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!("{} exited unexpectedly ({status})", self.name);
        }
        Ok(())
    }

    /// Waits up to `timeout` for the first line of the child's stdout that `parse` accepts.
    /// The rest of stdout is drained in the background so the child never blocks on it.
    pub fn await_stdout_line<T: Send + 'static>(
        &mut self,
        timeout: Duration,
        what: &str,
        parse: impl Fn(&str) -> Option<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let stdout = self
            .child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .with_context(|| format!("{}: stdout is not piped", self.name))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent && let Some(v) = parse(&line) {
                    let _ = tx.send(v);
                    sent = true;
                }
            }
        });
        match rx.recv_timeout(timeout) {
            Ok(v) => Ok(v),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stdout closed: the child is exiting; give it a moment to be reaped.
                for _ in 0..50 {
                    self.check_running()?;
                    std::thread::sleep(Duration::from_millis(20));
                }
                bail!("{} closed its stdout before reporting {what}", self.name)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.check_running()?;
                bail!("{} did not report {what} within {timeout:?}", self.name)
            }
        }
    }

    /// Stops the process: SIGTERM, a short grace period, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            // SAFETY: signalling our own child by pid.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `Command` whose stdout is piped and stderr goes to `log`.
pub fn command_with_log(
    program: &std::path::Path,
    log: &std::path::Path,
) -> anyhow::Result<Command> {
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut command = Command::new(program);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(file));
    Ok(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alive(pid: u32) -> bool {
        // A reaped process is gone; signal 0 only checks that it exists.
        // SAFETY: signal 0 sends nothing; it only asks whether the pid exists.
        unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
    }

    #[test]
    fn dropping_the_guard_kills_and_reaps() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let guard = ChildGuard::spawn("sleep", cmd).unwrap();
        let pid = guard.id().unwrap();
        assert!(alive(pid));
        drop(guard);
        assert!(!alive(pid));
    }

    #[test]
    fn reads_the_ready_line_and_times_out_otherwise() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo noise; echo 'port 4242'; sleep 30"])
            .stdout(Stdio::piped());
        let mut guard = ChildGuard::spawn("sh", cmd).unwrap();
        let port = guard
            .await_stdout_line(Duration::from_secs(10), "its port", |l| {
                l.strip_prefix("port ").and_then(|p| p.parse::<u16>().ok())
            })
            .unwrap();
        assert_eq!(port, 4242);

        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30"]).stdout(Stdio::piped());
        let mut guard = ChildGuard::spawn("quiet", cmd).unwrap();
        let err = guard
            .await_stdout_line(Duration::from_millis(200), "its port", |_| Some(()))
            .unwrap_err();
        assert!(err.to_string().contains("did not report its port"), "{err}");
    }

    #[test]
    fn an_exited_child_is_reported() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exit 3"]).stdout(Stdio::piped());
        let mut guard = ChildGuard::spawn("early", cmd).unwrap();
        let err = guard
            .await_stdout_line(Duration::from_secs(5), "its port", |_| None::<()>)
            .unwrap_err();
        assert!(err.to_string().contains("exited unexpectedly"), "{err}");
    }
}
