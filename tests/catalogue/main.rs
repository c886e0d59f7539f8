//! The machine catalogue and `darts machines`, against a real HTTPS server on 127.0.0.1
//! (hyper + rustls, with a test CA), a real CONNECT proxy and the real `darts` binary.

#[path = "../support/mod.rs"]
mod support;

mod cli;
mod downloads;
mod edits;
mod image_server;

pub const MAIN_CONF: &str = "\
; Machines offered on the landing page.
; One section per machine.

[slax.iso]
; Slax, a small live system
url=https://example.org/slax.iso   ; official mirror
description=Slax (Debian, [www.slax.org])

;[tinycore.iso]
;url=http://tinycorelinux.net/Core.iso
;description=TinyCore

[debian.qcow2]
description=Debian 12
";
