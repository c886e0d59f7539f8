//! `qemu:` scripts: extra arguments appended to one session's QEMU command line.
//!
//! The text is split into words like a shell would (quotes, backslashes; no expansion)
//! *before* symbols are filled in, so a value can never become a second argument. The
//! arguments come from the administrator's configuration and are trusted like
//! `qemu_exec_options`; the refusal list below is not a sandbox, it keeps the options
//! that would take the VM away from darts: its process supervision, its monitor (QMP),
//! its display (VNC, reached only through the gateway) and its start.

/// Options refused, without their leading dashes, and why.
const REFUSED: &[(&str, &str)] = &[
    ("daemonize", "darts supervises the QEMU process it starts"),
    ("pidfile", "darts supervises the QEMU process it starts"),
    ("runas", "darts' sockets and files must stay reachable"),
    ("chroot", "darts' sockets and files must stay reachable"),
    ("run-with", "darts' sockets and files must stay reachable"),
    ("qmp", "darts owns the monitor"),
    ("qmp-pretty", "darts owns the monitor"),
    ("monitor", "darts owns the monitor"),
    ("mon", "darts owns the monitor"),
    (
        "vnc",
        "the display is darts' VNC server, reached through the gateway",
    ),
    (
        "display",
        "the display is darts' VNC server, reached through the gateway",
    ),
    (
        "nographic",
        "the display is darts' VNC server, reached through the gateway",
    ),
    ("spice", "a second remote display would bypass the gateway"),
    (
        "sdl",
        "the display is darts' VNC server, reached through the gateway",
    ),
    (
        "curses",
        "the display is darts' VNC server, reached through the gateway",
    ),
    ("S", "the VM would wait, paused, for a monitor command"),
    (
        "incoming",
        "the VM would wait for a migration instead of booting",
    ),
    (
        "readconfig",
        "a configuration file could carry any refused option",
    ),
];

/// Splits a `qemu:` text into words.
pub fn split(text: &str) -> Result<Vec<String>, shell_words::ParseError> {
    shell_words::split(text)
}

/// The first refused argument and why, if any. Besides [`REFUSED`]: `-chardev socket,…`
/// (control sockets are darts' own, and their ids would collide with darts' ones) and a
/// `-serial`/`-parallel` value starting with `mon:` (a monitor multiplexed on a port).
pub fn refused(args: &[String]) -> Option<(String, &'static str)> {
    for (i, arg) in args.iter().enumerate() {
        let Some(name) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            continue;
        };
        if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == name) {
            return Some((arg.clone(), why));
        }
        let value = args.get(i + 1).map(String::as_str).unwrap_or_default();
        match name {
            "chardev" if value.split(',').next() == Some("socket") => {
                return Some((
                    format!("{arg} {value}"),
                    "socket character devices are darts' control channels",
                ));
            }
            "serial" | "parallel" if value.starts_with("mon:") => {
                return Some((format!("{arg} {value}"), "darts owns the monitor"));
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        split(text).unwrap()
    }

    #[test]
    fn splits_like_a_shell_without_expansion() {
        assert_eq!(
            words(r#"-smp 2 -name "my vm" -append 'a b' -x \$HOME"#),
            ["-smp", "2", "-name", "my vm", "-append", "a b", "-x", "$HOME"]
        );
        assert!(split("-name \"open").is_err());
    }

    #[test]
    fn ordinary_options_pass() {
        let args = words("-smp 4 -device virtio-rng-pci -chardev file,id=log,path=/tmp/l -serial chardev:log -usb");
        assert_eq!(refused(&args), None);
    }

    #[test]
    fn control_options_are_refused_in_both_dash_forms() {
        for text in [
            "-daemonize",
            "-pidfile /tmp/p",
            "--qmp unix:/tmp/q,server",
            "-monitor stdio",
            "-mon chardev=x",
            "-vnc :1",
            "--display gtk",
            "-nographic",
            "-spice port=5930",
            "-S",
            "-incoming tcp::4444",
            "-readconfig /tmp/c",
            "-runas nobody",
        ] {
            let (arg, why) = refused(&words(text)).unwrap_or_else(|| panic!("{text} passed"));
            assert!(text.starts_with(&arg), "{text}: {arg}");
            assert!(!why.is_empty());
        }
    }

    #[test]
    fn socket_chardevs_and_multiplexed_monitors_are_refused() {
        let (arg, _) =
            refused(&words("-smp 2 -chardev socket,id=c,path=/tmp/s,server=on")).unwrap();
        assert_eq!(arg, "-chardev socket,id=c,path=/tmp/s,server=on");
        assert!(refused(&words("-serial mon:stdio")).is_some());
        assert!(refused(&words("-parallel mon:stdio")).is_some());
        assert!(refused(&words("-serial stdio")).is_none());
        // Words are checked one by one: a value spelled like a refused option is
        // refused too, which errs on the safe side.
        assert!(refused(&words("-name -vnc")).is_some());
    }
}
