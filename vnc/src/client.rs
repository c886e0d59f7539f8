//! The client side of the RFB handshake: darts talking to QEMU's VNC server.
//!
//! Sans-IO: the caller feeds what the server sent to `ClientHandshake::advance`, writes
//! what comes out, and drops the consumed bytes. When VeNCrypt asks for TLS the machine
//! stops with `Status::StartTls`; the caller wraps its stream and calls `tls_started`.
//!
//! ```text
//! server: "RFB 003.008\n"            client: "RFB 003.00x\n"
//! 3.3:    u32 type (0 → u32 len + reason)
//! 3.7+:   u8 n, n × u8 types         client: u8 chosen type
//!   (n = 0 → u32 len + reason)
//! VNC auth: 16-byte challenge        client: 16-byte DES response
//! VeNCrypt: u8 major, u8 minor (0.2) client: 0, 2
//!           u8 ack (0 = ok), u8 n, n × u32 sub-types
//!                                    client: u32 chosen sub-type
//!           u8 ack (1 = ok) → TLS → (VNC auth for *Vnc sub-types)
//! SecurityResult: u32 (0 ok; 1 → u32 len + reason in 3.8)
//! ```

use crate::error::RfbError;
use crate::security::{kind, vencrypt, Transport, MAX_REASON};
use crate::version;
use crate::vnc_auth::{self, Password, CHALLENGE_LEN};

/// What the client side accepts.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The security the server must offer; a weaker offer fails the handshake.
    pub transport: Transport,
    /// For VNC authentication (directly or inside VeNCrypt).
    pub password: Option<Password>,
}

/// Where the handshake stands after `advance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Feed more bytes from the server.
    NeedMore,
    /// Start TLS on the connection now, then call `tls_started`.
    StartTls,
    /// Security is established; the next bytes belong to ClientInit/ServerInit.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Version,
    Type33,
    TypeCount,
    Types(u8),
    Reason {
        len: Option<u32>,
        after_result: bool,
    },
    Challenge,
    VencryptVersion,
    VencryptAck,
    SubtypeCount,
    Subtypes(u8),
    SubtypeAck,
    AwaitTls,
    Result,
    Done,
}

/// The handshake state machine; one per connection.
#[derive(Debug)]
pub struct ClientHandshake {
    config: ClientConfig,
    state: State,
    minor: u16,
    /// Security type (or VeNCrypt sub-type) in use, for logs.
    chosen: Option<u32>,
    /// Whether VNC authentication follows TLS.
    auth_after_tls: bool,
}

impl ClientHandshake {
    /// A handshake waiting for the server's version, which the server speaks first.
    pub fn new(config: ClientConfig) -> Self {
        Self {
            config,
            state: State::Version,
            minor: 8,
            chosen: None,
            auth_after_tls: false,
        }
    }

    /// The security type or VeNCrypt sub-type chosen so far.
    pub fn chosen(&self) -> Option<u32> {
        self.chosen
    }

    /// The RFB minor version agreed (3, 7 or 8).
    pub fn minor(&self) -> u16 {
        self.minor
    }

    /// Consumes bytes of `input` and appends what to send to `out`. Returns the number
    /// of input bytes used and the status. Call again while it makes progress.
    pub fn advance(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(usize, Status), RfbError> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            let step = self.step(rest, out)?;
            match step {
                Some(n) => used += n,
                None => {
                    let status = match self.state {
                        State::Done => Status::Done,
                        State::AwaitTls => Status::StartTls,
                        _ => Status::NeedMore,
                    };
                    return Ok((used, status));
                }
            }
        }
    }

    /// TLS is up; continue the handshake inside it.
    pub fn tls_started(&mut self) -> Result<(), RfbError> {
        if self.state != State::AwaitTls {
            return Err(RfbError::State("tls_started outside VeNCrypt"));
        }
        self.state = if self.auth_after_tls {
            State::Challenge
        } else {
            State::Result
        };
        Ok(())
    }

    /// One transition. `Ok(Some(n))`: consumed `n` bytes (maybe 0) and changed state;
    /// `Ok(None)`: needs more input or is waiting for the caller.
    fn step(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Option<usize>, RfbError> {
        match self.state {
            State::Version => {
                let Some(v) = version::parse(input).map_err(|_| RfbError::NotRfb)? else {
                    return Ok(None);
                };
                self.minor = v.agree()?;
                out.extend_from_slice(format!("RFB 003.00{}\n", self.minor).as_bytes());
                self.state = if self.minor == 3 {
                    State::Type33
                } else {
                    State::TypeCount
                };
                Ok(Some(version::LEN))
            }
            State::Type33 => {
                let Some(t) = read_u32(input) else {
                    return Ok(None);
                };
                match t {
                    0 => {
                        self.state = State::Reason {
                            len: None,
                            after_result: false,
                        }
                    }
                    1 if self.config.transport == Transport::Plain => {
                        self.chosen = Some(1);
                        self.state = State::Done;
                    }
                    2 if self.config.transport == Transport::Plain => {
                        self.chosen = Some(2);
                        self.state = State::Challenge;
                    }
                    other => {
                        return Err(RfbError::NoAcceptableSecurity {
                            offered: vec![other],
                        })
                    }
                }
                Ok(Some(4))
            }
            State::TypeCount => {
                let Some(&n) = input.first() else {
                    return Ok(None);
                };
                self.state = if n == 0 {
                    State::Reason {
                        len: None,
                        after_result: false,
                    }
                } else {
                    State::Types(n)
                };
                Ok(Some(1))
            }
            State::Types(n) => {
                let Some(types) = input.get(..usize::from(n)) else {
                    return Ok(None);
                };
                let choice = self.choose_type(types)?;
                out.push(choice);
                self.chosen = Some(u32::from(choice));
                self.state = match choice {
                    kind::NONE if self.minor == 8 => State::Result,
                    kind::NONE => State::Done,
                    kind::VNC_AUTH => State::Challenge,
                    _ => State::VencryptVersion,
                };
                Ok(Some(usize::from(n)))
            }
            State::Reason {
                len: None,
                after_result,
            } => {
                let Some(len) = read_u32(input) else {
                    return Ok(None);
                };
                if len > MAX_REASON {
                    return Err(RfbError::TooLong {
                        what: "failure reason",
                        len: len.into(),
                        max: MAX_REASON.into(),
                    });
                }
                self.state = State::Reason {
                    len: Some(len),
                    after_result,
                };
                Ok(Some(4))
            }
            State::Reason {
                len: Some(len),
                after_result,
            } => {
                let Some(text) = input.get(..len as usize) else {
                    return Ok(None);
                };
                let reason = String::from_utf8_lossy(text)
                    .trim_end_matches('\0')
                    .to_owned();
                Err(if after_result {
                    RfbError::AuthFailed(reason)
                } else {
                    RfbError::Refused(reason)
                })
            }
            State::Challenge => {
                let Some(challenge) = input.get(..CHALLENGE_LEN) else {
                    return Ok(None);
                };
                let password = self
                    .config
                    .password
                    .as_ref()
                    .ok_or(RfbError::PasswordMissing)?;
                let mut c = [0u8; CHALLENGE_LEN];
                c.copy_from_slice(challenge);
                out.extend_from_slice(&vnc_auth::response(&c, password));
                self.state = State::Result;
                Ok(Some(CHALLENGE_LEN))
            }
            State::VencryptVersion => {
                let Some(v) = input.get(..2) else {
                    return Ok(None);
                };
                if v[0] == 0 && v[1] < 2 {
                    return Err(RfbError::Malformed("VeNCrypt version below 0.2"));
                }
                out.extend_from_slice(&[0, 2]);
                self.state = State::VencryptAck;
                Ok(Some(2))
            }
            State::VencryptAck => {
                let Some(&ack) = input.first() else {
                    return Ok(None);
                };
                if ack != 0 {
                    return Err(RfbError::Refused("VeNCrypt version 0.2 refused".into()));
                }
                self.state = State::SubtypeCount;
                Ok(Some(1))
            }
            State::SubtypeCount => {
                let Some(&n) = input.first() else {
                    return Ok(None);
                };
                if n == 0 {
                    return Err(RfbError::NoAcceptableSecurity { offered: vec![] });
                }
                self.state = State::Subtypes(n);
                Ok(Some(1))
            }
            State::Subtypes(n) => {
                let len = usize::from(n) * 4;
                let Some(raw) = input.get(..len) else {
                    return Ok(None);
                };
                let offered: Vec<u32> = raw
                    .chunks_exact(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                let choice = self.choose_subtype(&offered)?;
                out.extend_from_slice(&choice.to_be_bytes());
                self.chosen = Some(choice);
                self.auth_after_tls = matches!(choice, vencrypt::X509_VNC | vencrypt::TLS_VNC);
                self.state = State::SubtypeAck;
                Ok(Some(len))
            }
            State::SubtypeAck => {
                let Some(&ack) = input.first() else {
                    return Ok(None);
                };
                if ack != 1 {
                    return Err(RfbError::Refused("VeNCrypt sub-type refused".into()));
                }
                self.state = State::AwaitTls;
                Ok(Some(1))
            }
            State::AwaitTls | State::Done => Ok(None),
            State::Result => {
                let Some(result) = read_u32(input) else {
                    return Ok(None);
                };
                if result == 0 {
                    self.state = State::Done;
                } else if self.minor == 8 {
                    self.state = State::Reason {
                        len: None,
                        after_result: true,
                    };
                } else {
                    return Err(RfbError::AuthFailed("security result failed".into()));
                }
                Ok(Some(4))
            }
        }
    }

    /// Picks a security type: never weaker than the configured transport asks.
    fn choose_type(&self, offered: &[u8]) -> Result<u8, RfbError> {
        let has = |t: u8| offered.contains(&t);
        let choice = match self.config.transport {
            Transport::X509 | Transport::AnonTls => has(kind::VENCRYPT).then_some(kind::VENCRYPT),
            Transport::Plain if self.config.password.is_some() && has(kind::VNC_AUTH) => {
                Some(kind::VNC_AUTH)
            }
            Transport::Plain if has(kind::NONE) => Some(kind::NONE),
            Transport::Plain if has(kind::VNC_AUTH) => Some(kind::VNC_AUTH),
            Transport::Plain => None,
        };
        choice.ok_or_else(|| RfbError::NoAcceptableSecurity {
            offered: offered.iter().map(|&t| u32::from(t)).collect(),
        })
    }

    fn choose_subtype(&self, offered: &[u32]) -> Result<u32, RfbError> {
        let with_password = self.config.password.is_some();
        let prefs: &[u32] = match (self.config.transport, with_password) {
            (Transport::X509, true) => &[vencrypt::X509_VNC, vencrypt::X509_NONE],
            (Transport::X509, false) => &[vencrypt::X509_NONE],
            (Transport::AnonTls, true) => &[vencrypt::TLS_VNC, vencrypt::TLS_NONE],
            (Transport::AnonTls, false) => &[vencrypt::TLS_NONE],
            (Transport::Plain, _) => &[],
        };
        prefs
            .iter()
            .copied()
            .find(|p| offered.contains(p))
            .ok_or_else(|| RfbError::NoAcceptableSecurity {
                offered: offered.to_vec(),
            })
    }
}

fn read_u32(input: &[u8]) -> Option<u32> {
    input
        .get(..4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests;
