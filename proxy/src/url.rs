//! The little URL handling the gateway needs: percent-decoding, the token of a websocket
//! request, and mapping a request path under the prefix to a relative path.

/// Decodes `%XX` escapes (and `+` as space when `form` is set). Invalid escapes stay as they are.
pub fn percent_decode(s: &str, form: bool) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if form => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The value of the first `name` parameter of a query string, read as a form
/// (`application/x-www-form-urlencoded`): names and values are percent-decoded with `+`
/// as space, invalid UTF-8 becomes U+FFFD, and a parameter without `=` has the empty
/// value. The one query parser of darts: the gateway's token and the API's parameters.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k, true) == name.as_bytes())
                .then(|| String::from_utf8_lossy(&percent_decode(v, true)).into_owned())
        })
}

/// The session token of a websocket request: `?token=T`, or, for links of the form
/// `vnc.html?…&path=?token=T` opened directly, the token inside `path`. Trailing
/// new lines are dropped, as websockify does.
pub fn token_from_query(query: Option<&str>) -> Option<String> {
    let query = query?;
    let token = query_param(query, "token").or_else(|| {
        let nested = query_param(query, "path")?;
        let (_, inner) = nested.split_once('?')?;
        query_param(inner, "token")
    })?;
    let token = token.trim_end_matches(['\n', '\r']);
    (!token.is_empty()).then(|| token.to_owned())
}

/// Maps a request path to a path relative to the prefix. Doubled slashes are folded
/// (reverse proxies produce `//vnc.html`). `None` if the path is outside the prefix.
pub fn strip_prefix(path: &str, prefix: &str) -> Option<String> {
    let folded = fold_slashes(path);
    if prefix.is_empty() {
        return Some(folded);
    }
    let rest = folded.strip_prefix(prefix)?;
    if rest.is_empty() {
        Some("/".into())
    } else if rest.starts_with('/') {
        Some(rest.to_owned())
    } else {
        None
    }
}

fn fold_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes() {
        assert_eq!(percent_decode("a%20b+c%zz%4", true), b"a b c%zz%4");
        assert_eq!(percent_decode("a+b", false), b"a+b");
        assert_eq!(percent_decode("%41%42", false), b"AB");
        assert_eq!(percent_decode("%", false), b"%");
        assert_eq!(percent_decode("%4", false), b"%4");
    }

    #[test]
    fn query_parameters_are_read_as_a_form() {
        assert_eq!(query_param("a=1&b=2", "b"), Some("2".into()));
        assert_eq!(query_param("a=1&b=2", "c"), None);
        assert_eq!(query_param("", "a"), None);
        // The first one counts, even when empty; a bare name has the empty value.
        assert_eq!(query_param("a=1&a=2", "a"), Some("1".into()));
        assert_eq!(query_param("a&a=2", "a"), Some(String::new()));
        assert_eq!(query_param("a=&a=2", "a"), Some(String::new()));
        assert_eq!(query_param("&&a=1", "a"), Some("1".into()));
        // Values: escapes and `+` as space; only the first `=` separates.
        assert_eq!(query_param("q=a+b%20c%2Bd", "q"), Some("a b c+d".into()));
        assert_eq!(query_param("q=x=y", "q"), Some("x=y".into()));
        assert_eq!(query_param("q=%zz%4", "q"), Some("%zz%4".into()));
        assert_eq!(query_param("q=%C3%A9", "q"), Some("é".into()));
        assert_eq!(query_param("q=%FF", "q"), Some("\u{FFFD}".into()));
        // Names are decoded the same way.
        assert_eq!(query_param("my+name=1", "my name"), Some("1".into()));
        assert_eq!(query_param("tok%65n=1", "token"), Some("1".into()));
        assert_eq!(query_param("Token=1", "token"), None);
    }

    #[test]
    fn finds_the_token_where_the_original_links_put_it() {
        assert_eq!(token_from_query(Some("token=abc")), Some("abc".into()));
        assert_eq!(
            token_from_query(Some("x=1&token=a%2Bb&token=second")),
            Some("a+b".into())
        );
        assert_eq!(
            token_from_query(Some("resize=remote&autoconnect=true&path=?token=T1")),
            Some("T1".into())
        );
        assert_eq!(
            token_from_query(Some("path=websockify%3Ftoken%3DT2")),
            Some("T2".into())
        );
        assert_eq!(token_from_query(Some("token=abc%0A")), Some("abc".into()));
        assert_eq!(token_from_query(Some("token=")), None);
        assert_eq!(token_from_query(Some("other=1")), None);
        assert_eq!(token_from_query(None), None);
    }

    #[test]
    fn strips_prefixes_and_folds_slashes() {
        assert_eq!(
            strip_prefix("/darts/vnc.html", "/darts"),
            Some("/vnc.html".into())
        );
        assert_eq!(strip_prefix("/darts", "/darts"), Some("/".into()));
        assert_eq!(strip_prefix("/dartsx/a", "/darts"), None);
        assert_eq!(strip_prefix("//vnc.html", ""), Some("/vnc.html".into()));
        assert_eq!(
            strip_prefix("/darts//app//ui.js", "/darts"),
            Some("/app/ui.js".into())
        );
    }
}
