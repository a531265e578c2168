//! Work over many files on every core: each worker thread takes every
//! n-th file and keeps its own accumulator.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};

/// Runs `work(file, acc)` over `files` on one thread per core, each thread
/// with its own `T::default()` accumulator; the accumulators, or the first
/// error.
pub fn fold_files<T: Default + Send>(
    files: &[PathBuf],
    work: impl Fn(&Path, &mut T) -> Result<()> + Sync,
) -> Result<Vec<T>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let work = &work;
                s.spawn(move || -> Result<T> {
                    let mut acc = T::default();
                    for f in files.iter().skip(t).step_by(threads) {
                        work(f, &mut acc)?;
                    }
                    Ok(acc)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("a worker panicked")))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_is_worked_on_once_and_errors_come_back() {
        let files: Vec<PathBuf> = (0..37).map(|i| PathBuf::from(format!("f{i}"))).collect();
        let accs = fold_files(&files, |f, seen: &mut Vec<String>| {
            seen.push(f.display().to_string());
            Ok(())
        })
        .unwrap();
        let mut all: Vec<String> = accs.into_iter().flatten().collect();
        all.sort();
        let mut want: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        want.sort();
        assert_eq!(all, want);
        let err = fold_files(&files, |f, _: &mut ()| match f.to_str() {
            Some("f20") => Err(anyhow!("bad f20")),
            _ => Ok(()),
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "bad f20");
    }
}
