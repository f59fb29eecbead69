//! A bounded pool of scoped threads for the pipeline's jobs (resampling
//! widths, encoding renditions): at most `workers` jobs (and their buffers)
//! at once, pulled in the given order from a shared index.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::error::{Error, Result};

/// Run `job` over every item on up to `workers` threads (the calling thread
/// alone when `workers` is 1) and return the results in the items' order.
/// After the first error no new job starts; the jobs skipped that way report
/// that error's kind again, so the first error is what callers see first.
pub fn run<T, R, F>(items: &[T], workers: usize, job: F) -> Vec<Result<R>>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> Result<R> + Sync,
{
    let workers = workers.clamp(1, items.len().max(1));
    if workers == 1 {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let r = job(item);
            let stop = r.is_err();
            out.push(r);
            if stop {
                break;
            }
        }
        return out;
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let slots: Mutex<Vec<Option<Result<R>>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = job(item);
                    if r.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    if let Ok(mut slots) = slots.lock() {
                        slots[i] = Some(r);
                    }
                }
            });
        }
    });
    let slots = slots
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Errors first (the earliest item's), so `collect::<Result<_>>()` or a
    // loop with `?` reports a real failure rather than a skipped job.
    let mut errors = Vec::new();
    let mut done = Vec::with_capacity(slots.len());
    let mut missing = false;
    for slot in slots {
        match slot {
            Some(Err(e)) => errors.push(Err(e)),
            Some(ok) => done.push(ok),
            None => missing = true,
        }
    }
    if !errors.is_empty() {
        return errors;
    }
    if missing {
        // A worker died (a panic inside a job): never return a partial set.
        return vec![Err(Error::Internal(
            "a worker thread did not finish its job".to_string(),
        ))];
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_items_order() {
        let items: Vec<u32> = (0..50).collect();
        for workers in [1, 2, 8] {
            let out: Vec<u32> = run(&items, workers, |&i| Ok(i * 2))
                .into_iter()
                .collect::<Result<_>>()
                .unwrap();
            assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        }
    }

    #[test]
    fn an_error_stops_new_jobs_and_comes_first() {
        let items: Vec<u32> = (0..50).collect();
        let started = AtomicUsize::new(0);
        let out = run(&items, 2, |&i| {
            started.fetch_add(1, Ordering::Relaxed);
            if i == 3 {
                Err(Error::Internal("three".into()))
            } else {
                Ok(i)
            }
        });
        assert!(matches!(&out[0], Err(Error::Internal(m)) if m == "three"));
        assert!(started.load(Ordering::Relaxed) < 50);
        let out = run(&items, 1, |&i| {
            if i == 3 {
                Err(Error::Internal("three".into()))
            } else {
                Ok(i)
            }
        });
        assert_eq!(out.len(), 4);
        assert!(out[3].is_err());
    }
}
