//! darts' JSON API as the soak uses it: log in, create, list and stop sessions, read the
//! status card. One HTTP/1.1 connection per call (hyper's client), each bounded by a
//! timeout. Logins live in darts' memory, so after a restart a call answered 401 logs in
//! again and is retried once.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::error::{Result, SoakError};

/// Creation answers once the desktop is ready: QEMU under TCG on a busy machine is slow.
const CREATE_TIMEOUT: Duration = Duration::from_secs(240);
/// Stopping powers the guest off, then quits QEMU, each step bounded by darts.
const STOP_TIMEOUT: Duration = Duration::from_secs(120);
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// What to ask for in each creation.
#[derive(Debug, Clone)]
pub struct Machine {
    pub name: String,
    pub cpu: Option<u32>,
    pub memory: Option<f64>,
}

/// A session just created, with its secrets (never logged).
#[derive(Clone)]
pub struct Created {
    pub name: String,
    pub token: String,
    pub view_token: Option<String>,
}

impl std::fmt::Debug for Created {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Created")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Login {
    cookie: String,
    csrf: String,
}

/// The API of one darts service.
pub struct Api {
    /// Where the service listens (websockets go there too).
    pub addr: SocketAddr,
    host: String,
    /// Path prefix of the pages and API, e.g. `/darts`.
    prefix: String,
    user: String,
    password: Option<String>,
    machine: Machine,
    login: Mutex<Option<Login>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("addr", &self.addr)
            .field("prefix", &self.prefix)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Api {
    /// `url` is the service's base, `http://HOST:PORT/PREFIX`.
    pub fn new(url: &str, user: &str, password: Option<String>, machine: Machine) -> Result<Self> {
        let uri: Uri = url
            .parse()
            .map_err(|e| SoakError::Setup(format!("{url:?} is not a URL: {e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(SoakError::Setup(format!(
                "{url:?}: only plain http:// on loopback is supported"
            )));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| SoakError::Setup(format!("{url:?} has no host")))?;
        let host = authority.as_str().to_owned();
        let port = authority.port_u16().unwrap_or(80);
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(authority.host(), port))
            .map_err(SoakError::io(format!("resolving {host}")))?
            .next()
            .ok_or_else(|| SoakError::Setup(format!("{host} has no address")))?;
        Ok(Self {
            addr,
            host,
            prefix: uri.path().trim_end_matches('/').to_owned(),
            user: user.to_owned(),
            password,
            machine,
            login: Mutex::new(None),
        })
    }

    /// Logs in (again); later calls carry the cookie and CSRF token.
    pub async fn login(&self) -> Result<()> {
        let mut body = json!({ "user": self.user });
        if let Some(p) = &self.password {
            body["password"] = json!(p);
        }
        let (status, headers, value) = self
            .exchange(
                Method::POST,
                "/api/login",
                Some(&body),
                None,
                CALL_TIMEOUT,
                "login",
            )
            .await?;
        if status != StatusCode::OK {
            return Err(refusal("login", status, &value));
        }
        let cookie = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                v.split(';')
                    .next()
                    .filter(|c| c.starts_with("darts_login="))
            })
            .ok_or_else(|| SoakError::Setup("the login answer set no darts_login cookie".into()))?
            .to_owned();
        let csrf = value["csrf"]
            .as_str()
            .ok_or_else(|| SoakError::Setup("the login answer has no csrf".into()))?
            .to_owned();
        *self.login.lock().unwrap_or_else(|e| e.into_inner()) = Some(Login { cookie, csrf });
        Ok(())
    }

    /// `POST /api/sessions`.
    pub async fn create(&self, oneshot: bool) -> Result<Created> {
        let mut body = json!({ "machine": self.machine.name, "oneshot": oneshot });
        if let Some(cpu) = self.machine.cpu {
            body["cpu"] = json!(cpu);
        }
        if let Some(mem) = self.machine.memory {
            body["memory"] = json!(mem);
        }
        let (status, v) = self
            .call(
                Method::POST,
                "/api/sessions",
                Some(&body),
                CREATE_TIMEOUT,
                "create",
            )
            .await?;
        if status != StatusCode::CREATED {
            return Err(refusal("create", status, &v));
        }
        let bad = |what: &str| SoakError::Http {
            what: "create",
            detail: format!("answer without {what}"),
        };
        let name = v["session"]["name"]
            .as_str()
            .ok_or_else(|| bad("session.name"))?;
        let url = v["url"].as_str().ok_or_else(|| bad("url"))?;
        Ok(Created {
            name: name.to_owned(),
            token: token_of(url).ok_or_else(|| bad("a token in url"))?,
            view_token: v["view_url"].as_str().and_then(token_of),
        })
    }

    /// `GET /api/sessions`: the names of this user's sessions.
    pub async fn list(&self) -> Result<Vec<String>> {
        let (status, v) = self
            .call(Method::GET, "/api/sessions", None, CALL_TIMEOUT, "list")
            .await?;
        if status != StatusCode::OK {
            return Err(refusal("list", status, &v));
        }
        Ok(v["sessions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `DELETE /api/sessions/{name}`; `Ok(false)` if darts does not know it.
    pub async fn stop(&self, name: &str) -> Result<bool> {
        let path = format!("/api/sessions/{name}");
        let (status, v) = self
            .call(Method::DELETE, &path, None, STOP_TIMEOUT, "stop")
            .await?;
        match status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(refusal("stop", status, &v)),
        }
    }

    /// `GET /api/status`: the number of sessions the server counts.
    pub async fn session_count(&self) -> Result<u64> {
        let (status, v) = self
            .call(Method::GET, "/api/status", None, CALL_TIMEOUT, "status")
            .await?;
        if status != StatusCode::OK {
            return Err(refusal("status", status, &v));
        }
        v["sessions"].as_u64().ok_or_else(|| SoakError::Http {
            what: "status",
            detail: "answer without sessions".into(),
        })
    }

    /// One call with the login; logs in first if needed and again after a 401.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
        what: &'static str,
    ) -> Result<(StatusCode, Value)> {
        for attempt in 0..2 {
            let login = self.login.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let Some(login) = login else {
                self.login().await?;
                continue;
            };
            let (status, _, v) = self
                .exchange(method.clone(), path, body, Some(&login), timeout, what)
                .await?;
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                self.login().await?;
                continue;
            }
            return Ok((status, v));
        }
        Err(SoakError::Http {
            what,
            detail: "still not logged in after logging in again".into(),
        })
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        login: Option<&Login>,
        timeout: Duration,
        what: &'static str,
    ) -> Result<(StatusCode, http::HeaderMap, Value)> {
        let http_err = |detail: String| SoakError::Http { what, detail };
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(header::HOST, &self.host)
            .header(header::ACCEPT, "application/json");
        if let Some(l) = login {
            req = req
                .header(header::COOKIE, &l.cookie)
                .header("x-csrf-token", &l.csrf);
        }
        let payload = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| http_err(e.to_string()))?;
        let exchange = async {
            let tcp = TcpStream::connect(self.addr)
                .await
                .map_err(|e| http_err(format!("connecting to {}: {e}", self.addr)))?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| http_err(e.to_string()))?;
            tokio::spawn(conn);
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| http_err(e.to_string()))?;
            let (parts, body) = resp.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|e| http_err(e.to_string()))?
                .to_bytes();
            let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Ok((parts.status, parts.headers, value))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| SoakError::Timeout(what))?
    }
}

fn refusal(what: &'static str, status: StatusCode, v: &Value) -> SoakError {
    SoakError::Refused {
        what,
        status: status.as_u16(),
        code: v["code"].as_str().unwrap_or("-").to_owned(),
        message: v["message"].as_str().unwrap_or_default().to_owned(),
    }
}

/// The token of a connection link (`…?…&path=?token=T`).
pub fn token_of(url: &str) -> Option<String> {
    let (_, rest) = url.rsplit_once("token=")?;
    let token = rest.split(['&', '#']).next()?;
    (!token.is_empty()).then(|| token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_links() {
        assert_eq!(
            token_of("http://h/darts/vnc.html?resize=remote&autoconnect=true&path=?token=abc")
                .as_deref(),
            Some("abc")
        );
        assert_eq!(token_of("http://h/x?token=t1&y=2").as_deref(), Some("t1"));
        assert_eq!(token_of("http://h/x?token="), None);
        assert_eq!(token_of("http://h/x"), None);
    }

    #[test]
    fn base_urls_are_checked() {
        let m = Machine {
            name: "demo.img".into(),
            cpu: None,
            memory: None,
        };
        let api = Api::new("http://127.0.0.1:6080/darts/", "u", None, m.clone()).unwrap();
        assert_eq!(api.addr, "127.0.0.1:6080".parse().unwrap());
        assert_eq!(api.prefix, "/darts");
        assert!(Api::new("https://127.0.0.1/darts", "u", None, m.clone()).is_err());
        assert!(Api::new("not a url", "u", None, m).is_err());
    }
}
