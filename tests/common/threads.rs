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
    /// Its scheduling policy: field 41 of proc_pid_stat(5) (0 `SCHED_OTHER`, 3 `SCHED_BATCH`).
    pub fn policy(&self) -> u32 {
        let stat = std::fs::read_to_string(self.dir.join("stat")).expect("stat");
        // `pid (comm) state ...`: the comm may hold spaces, the fields after it don't.
        let (_, rest) = stat.rsplit_once(") ").expect("comm");
        rest.split(' ')
            .nth(41 - 3) // `rest` starts at field 3
            .expect("policy")
            .parse()
            .expect("number")
    }

    /// Its timer slack in nanoseconds. (Only `/proc/<tid>` has the file, not `task/<tid>`.)
    pub fn timer_slack_ns(&self) -> u64 {
        let tid = self.dir.file_name().expect("tid").to_string_lossy();
        std::fs::read_to_string(format!("/proc/{tid}/timerslack_ns"))
            .expect("timerslack_ns")
            .trim()
            .parse()
            .expect("number")
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
