//! A running server's threads as Linux shows them under `/proc/<pid>/task`.

use std::path::PathBuf;

/// One thread of a process.
#[derive(Debug)]
pub struct Thread {
    /// The name it was given (`comm`).
    pub name: String,
    /// Its `/proc/<pid>/task/<tid>` directory.
    pub dir: PathBuf,
}

impl Thread {
    /// Its scheduling policy (0 `SCHED_OTHER`, 3 `SCHED_BATCH`).
    pub fn policy(&self) -> i64 {
        self.stat_field(41)
    }

    /// Its niceness.
    pub fn nice(&self) -> i64 {
        self.stat_field(19)
    }

    /// Field `n` (from 1) of its `stat`, a number.
    fn stat_field(&self, n: usize) -> i64 {
        let stat = std::fs::read_to_string(self.dir.join("stat")).expect("stat");
        super::stat_field(&stat, n)
            .expect("field")
            .parse()
            .expect("number")
    }
}

/// The thread calling this (the test itself).
pub fn current() -> Thread {
    Thread {
        name: "(this test)".to_owned(),
        dir: PathBuf::from("/proc/thread-self"),
    }
}

/// The threads of process `pid` that are alive now.
pub fn of(pid: u32) -> Vec<Thread> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("threads")
        // A thread that ended meanwhile (a blocking-pool thread) has nothing to say.
        .filter_map(|task| {
            let dir = task.ok()?.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            Some(Thread {
                name: name.trim_end().to_owned(),
                dir,
            })
        })
        .collect()
}

/// The threads of process `pid` named `name`.
pub fn named(pid: u32, name: &str) -> Vec<Thread> {
    of(pid).into_iter().filter(|t| t.name == name).collect()
}
