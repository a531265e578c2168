//! Every output of a build in one pass over the raw image: one reader
//! thread reads each data chunk once and hands it to every writer, and the
//! writers (each with its compression workers, then its outer xz or zstd
//! stream) run at the same time, so both cores stay busy until the slowest
//! output is done. An OVA whose disk would be the same bytes as a
//! streamOptimized VMDK written in the same pass takes that file's grains
//! instead of compressing them again. Each output's wall and CPU time is
//! measured (see [`super::cpu`]). Output bytes do not depend on any of this:
//! they are those of writing each output alone.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};

use super::cpu::{self, Account};
use super::sparse::{content_seed, Feed, RawImage, CHUNK};
use super::{compress_file, ova, write_from, Ctx, DiskFormat, OuterCompression, WriteOptions};

/// Chunks queued per writer: memory is bounded by this many chunks per
/// writer (shared between writers) while the slowest one catches up.
const QUEUE: usize = 8;

/// One file written in a pass.
pub struct Job {
    /// Name in progress messages, e.g. `qcow2+zstd`.
    pub label: String,
    /// The writer.
    pub format: DiskFormat,
    /// Its options.
    pub opts: WriteOptions,
    /// The stream wrapped around the writer's file.
    pub outer: OuterCompression,
    /// Its level (`None`: the compressor's default).
    pub outer_level: Option<u32>,
    /// The file to write (appears only when complete).
    pub dest: PathBuf,
}

/// What writing one output took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// From the start of the pass to the output's completion.
    pub wall: Duration,
    /// CPU time of every thread that worked for it.
    pub cpu: Duration,
}

/// Where one job is, for the progress display.
#[derive(Default)]
struct State {
    /// Per mille of the image written.
    permille: AtomicU64,
    /// 0 writing, 1 compressing, 2 done, 3 failed.
    phase: AtomicU8,
    /// Set when the job ends; an OVA that reuses this job's VMDK waits on it.
    ended: Mutex<Option<bool>>,
    cond: Condvar,
}

impl State {
    fn end(&self, ok: bool) {
        self.phase.store(if ok { 2 } else { 3 }, Ordering::Relaxed);
        if let Ok(mut e) = self.ended.lock() {
            *e = Some(ok);
        }
        self.cond.notify_all();
    }

    /// Waits for the job to end; true if it succeeded.
    fn wait(&self) -> bool {
        let Ok(mut e) = self.ended.lock() else {
            return false;
        };
        loop {
            if let Some(ok) = *e {
                return ok;
            }
            e = match self.cond.wait(e) {
                Ok(e) => e,
                Err(_) => return false,
            };
        }
    }
}

/// The job whose finished file an OVA job can take its disk from.
fn vmdk_to_reuse(jobs: &[Job], ova: &Job) -> Option<usize> {
    jobs.iter().position(|j| {
        j.format == DiskFormat::VmdkStream
            && j.outer == OuterCompression::None
            && j.opts.level == ova.opts.level
            && j.opts.seed == ova.opts.seed
    })
}

/// What the threads of a pass share.
struct Shared<'a> {
    jobs: &'a [Job],
    img: &'a RawImage,
    states: Vec<State>,
    /// Per job: the VMDK job an OVA job takes its disk from.
    reuse: Vec<Option<usize>>,
    seeds: Vec<[u8; 32]>,
    abort: AtomicBool,
    first_failure: Mutex<Option<usize>>,
    start: Instant,
}

/// Writes every job from `raw` in one pass; `status` is called about four
/// times a second with a one-line summary. On failure no destination of a
/// failed or stopped job is left behind, and the first failure is returned.
pub fn run(raw: &Path, jobs: &[Job], status: &mut dyn FnMut(&str)) -> Result<Vec<Timing>> {
    for (i, j) in jobs.iter().enumerate() {
        if jobs[..i].iter().any(|k| k.dest == j.dest) {
            return Err(anyhow!(
                "{} and another output would both be written to {}",
                j.label,
                j.dest.display()
            ));
        }
    }
    let img = RawImage::open(raw)?;
    let mut seed = None;
    let mut seeds = Vec::new();
    for j in jobs {
        seeds.push(match j.opts.seed {
            Some(s) => s,
            None => *match &seed {
                Some(s) => s,
                None => seed.insert(content_seed(raw)?),
            },
        });
    }
    let reuse: Vec<Option<usize>> = jobs
        .iter()
        .map(|j| (j.format == DiskFormat::Ova).then(|| vmdk_to_reuse(jobs, j))?)
        .collect();
    let mut senders = Vec::new();
    let mut inputs = Vec::new();
    for r in &reuse {
        inputs.push(match r {
            Some(_) => None,
            None => {
                let (tx, rx) = mpsc::sync_channel(QUEUE);
                senders.push(tx);
                Some(img.fed(rx)?)
            }
        });
    }
    let sh = Shared {
        jobs,
        img: &img,
        states: jobs.iter().map(|_| State::default()).collect(),
        reuse,
        seeds,
        abort: AtomicBool::new(false),
        first_failure: Mutex::new(None),
        start: Instant::now(),
    };
    let results = std::thread::scope(|scope| -> Result<Vec<Result<Timing>>> {
        let reader = scope.spawn(|| read_once(&img, senders, &sh.abort));
        let mut handles = Vec::new();
        for (i, input) in inputs.into_iter().enumerate() {
            let sh = &sh;
            let h = std::thread::Builder::new()
                // Threads that C encoders start inherit this name.
                .name(format!("abw-{i}"))
                .spawn_scoped(scope, move || job_thread(sh, i, input))
                .context("starting a writer thread")?;
            handles.push(h);
        }
        while !handles.iter().all(|h| h.is_finished()) {
            status(&summary(jobs, &sh.states));
            std::thread::sleep(Duration::from_millis(250));
        }
        let results = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a writer panicked")))
            })
            .collect();
        // A reader error reached every writer still reading (as the error
        // of its output); only a panic is news.
        reader
            .join()
            .map_err(|_| anyhow!("the image reader panicked"))?;
        Ok(results)
    })?;
    first_error(results, &sh.first_failure)
}

/// The timings, or the error of the job that failed first (the others
/// were stopped because of it).
fn first_error(results: Vec<Result<Timing>>, first: &Mutex<Option<usize>>) -> Result<Vec<Timing>> {
    let failed = first.lock().ok().and_then(|f| *f);
    let mut timings = Vec::new();
    let mut errors = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(t) => timings.push(t),
            Err(e) if Some(i) == failed => return Err(e),
            Err(e) => errors.push(e),
        }
    }
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(timings),
    }
}

/// The thread of job `i`: writes it, charging every thread that works
/// for it; on failure stops the pass.
fn job_thread(sh: &Shared, i: usize, input: Option<RawImage>) -> Result<Timing> {
    let (job, state) = (&sh.jobs[i], &sh.states[i]);
    let reused = sh.reuse[i].map(|v| (&sh.jobs[v].dest, &sh.states[v]));
    let account = Arc::new(Account::default());
    let r = {
        let _charge = cpu::enter(Some(account.clone()));
        let src = input.as_ref().unwrap_or(sh.img);
        write_job(job, src, sh.seeds[i], reused, state)
    };
    state.end(r.is_ok());
    if r.is_err() {
        sh.abort.store(true, Ordering::Relaxed);
        if let Ok(mut f) = sh.first_failure.lock() {
            f.get_or_insert(i);
        }
    }
    r.with_context(|| format!("writing {}", job.label))
        .map(|()| Timing {
            wall: sh.start.elapsed(),
            cpu: account.get(),
        })
}

/// The reader: every chunk that may hold data, read once, sent to every
/// writer still listening; stops early when a writer failed.
fn read_once(img: &RawImage, mut senders: Vec<SyncSender<Feed>>, abort: &AtomicBool) {
    let r = (|| -> Result<()> {
        for (a, b) in img.block_ranges(CHUNK as u64)? {
            for idx in a..b {
                if senders.is_empty() {
                    return Ok(());
                }
                if abort.load(Ordering::Relaxed) {
                    return Err(anyhow!("stopped: another output failed"));
                }
                let mut buf = vec![0u8; CHUNK];
                img.read_block(idx, &mut buf)?;
                if super::sparse::is_zero(&buf) {
                    continue;
                }
                let data = Arc::new(buf);
                // A writer that failed has hung up: stop feeding it.
                senders.retain(|tx| tx.send(Feed::Data(idx, data.clone())).is_ok());
            }
        }
        Ok(())
    })();
    for tx in &senders {
        let _ = tx.send(match &r {
            Ok(()) => Feed::End,
            Err(e) => Feed::Failed(format!("{e:#}")),
        });
    }
}

/// Writes one job: its writer's file (or an OVA around another job's
/// VMDK), then the outer stream if any.
fn write_job(
    job: &Job,
    input: &RawImage,
    seed: [u8; 32],
    reused: Option<(&PathBuf, &State)>,
    state: &State,
) -> Result<()> {
    let mut progress = |done: u64, total: u64| {
        state
            .permille
            .store(done * 1000 / total.max(1), Ordering::Relaxed)
    };
    let mut write = |dest: &Path| -> Result<()> {
        match reused {
            Some((vmdk, vmdk_state)) => {
                if !vmdk_state.wait() {
                    return Err(anyhow!("stopped: the VMDK it reuses failed"));
                }
                let ctx = Ctx {
                    input,
                    opts: &job.opts,
                    seed,
                    threads: 1,
                };
                ova::write_reusing(&ctx, vmdk, dest)
            }
            None => write_from(input, seed, job.format, &job.opts, dest, &mut progress),
        }
    };
    if job.outer == OuterCompression::None {
        return write(&job.dest);
    }
    // The inner file keeps its final name (VMDK descriptors name their own
    // file) in a scratch directory that the next run removes if this one
    // is killed.
    let name = super::file_name(&job.dest);
    let inner_name = name.trim_end_matches(".xz").trim_end_matches(".zst");
    let dir = match job.dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let scratch = dir.join(format!("{}{inner_name}.d", common::atomic::TMP_PREFIX));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let inner = scratch.join(inner_name);
    let r = write(&inner).and_then(|()| {
        state.phase.store(1, Ordering::Relaxed);
        compress_file(
            &inner,
            job.outer,
            job.outer_level,
            job.opts.threads,
            &job.dest,
        )
        .with_context(|| format!("compressing {name}"))
    });
    crate::fsutil::remove_tree(&scratch)?;
    r
}

/// One line: each unfinished output and where it is.
fn summary(jobs: &[Job], states: &[State]) -> String {
    let mut done = 0;
    let mut parts = Vec::new();
    for (j, s) in jobs.iter().zip(states) {
        match s.phase.load(Ordering::Relaxed) {
            0 => parts.push(format!(
                "{} {}%",
                j.label,
                s.permille.load(Ordering::Relaxed) / 10
            )),
            1 => parts.push(format!("{} compressing", j.label)),
            _ => done += 1,
        }
    }
    if done > 0 {
        parts.push(format!("{done}/{} done", jobs.len()));
    }
    parts.join(", ")
}
