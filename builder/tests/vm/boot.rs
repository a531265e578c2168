//! One boot of a test image in QEMU: the console and the checks' report
//! on two serial ports, the guest watched over QMP, bounded in time.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use atomicbuild::model::Firmware;
use atomicbuild::qemu::{Serial, Vm};
use common::cmd::tail;

const BOOT_TIMEOUT: Duration = Duration::from_secs(25 * 60);

/// The console log so far (firmware writes bytes that are not UTF-8).
pub fn read_console(log: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned()
}

/// Boot `image` with the first-boot `config` (if any) and the port
/// `forward`s and return (the checks report, the console, what `outside`
/// found) once the checks finished. The guest writes its report to a second
/// serial port and then waits (when its config asks it to hold) while
/// `outside` checks it from this machine, or powers off; then the VM is
/// stopped.
pub fn boot(
    image: &Path,
    firmware: Firmware,
    scratch: &Path,
    config: Option<&Path>,
    forward: Vec<(u16, u16)>,
    outside: impl FnOnce() -> Vec<String>,
) -> Result<(String, String, Vec<String>), String> {
    let log = scratch.join("console.log");
    let report = scratch.join("checks.log");
    let vm = Vm {
        image: image.to_owned(),
        firmware,
        memory: 2048,
        cpus: 1,
        snapshot: true,
        serial: Serial::File(log.clone()),
        scratch: scratch.to_owned(),
        forward,
        extra: [
            vec!["-serial".into(), format!("file:{}", report.display())],
            config
                .map(atomicbuild::qemu::firstboot_args)
                .unwrap_or_default(),
        ]
        .concat(),
    };
    let mut running = vm
        .spawn(|c| {
            c.stdout(Stdio::null()).stderr(Stdio::piped());
        })
        .map_err(|e| format!("{e:#}"))?;
    let start = Instant::now();
    loop {
        if read_console(&report).contains("ABCHECK-END") {
            eprintln!(
                "[{firmware:?}] guest checks done after {:.0}s",
                start.elapsed().as_secs_f64()
            );
            // The report of this boot: what `outside` does may reboot the
            // guest, whose later boots report again.
            let first = read_console(&report);
            let found = outside();
            running.stop();
            return Ok((first, read_console(&log), found));
        }
        let exited = match running.check() {
            Ok(st) => st,
            Err(e) => {
                return Err(format!(
                    "{e:#}\nreport so far:\n{}\nconsole tail:\n{}",
                    tail(&read_console(&report), 20),
                    tail(&read_console(&log), 60)
                ))
            }
        };
        if let Some(st) = exited {
            // The guest may have finished and powered off since the last read.
            if read_console(&report).contains("ABCHECK-END") {
                continue;
            }
            let mut err = String::new();
            if let Some(mut e) = running.child().stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return Err(format!(
                "QEMU exited ({st}) before the checks finished; QEMU said: {err}\nreport so far:\n{}\nconsole tail:\n{}",
                tail(&read_console(&report), 20),
                tail(&read_console(&log), 60)
            ));
        }
        if start.elapsed() > BOOT_TIMEOUT {
            running.stop();
            return Err(format!(
                "the boot did not finish within {}s; report so far:\n{}\nconsole tail:\n{}",
                BOOT_TIMEOUT.as_secs(),
                tail(&read_console(&report), 20),
                tail(&read_console(&log), 60)
            ));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}
