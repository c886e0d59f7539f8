//! A command's answer on stdout and its notes on stderr. `print!` and friends panic when
//! the write fails (`darts status | head -1`, a closed terminal); these lose the rest of
//! the output and nothing else. The service itself logs through `telemetry` only.

use std::fmt::Arguments;
use std::io::Write;

/// Writes `args` to `w`, ignoring a failed write.
pub fn write(mut w: impl Write, args: Arguments<'_>) {
    let _ = w.write_fmt(args);
    let _ = w.flush();
}

/// `print!` that never panics.
macro_rules! out {
    ($($arg:tt)*) => { $crate::out::write(::std::io::stdout().lock(), format_args!($($arg)*)) };
}

/// `println!` that never panics.
macro_rules! outln {
    () => { out!("\n") };
    ($($arg:tt)*) => { $crate::out::write(::std::io::stdout().lock(), format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprint!` that never panics.
macro_rules! err {
    ($($arg:tt)*) => { $crate::out::write(::std::io::stderr().lock(), format_args!($($arg)*)) };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => { $crate::out::write(::std::io::stderr().lock(), format_args!("{}\n", format_args!($($arg)*))) };
}
