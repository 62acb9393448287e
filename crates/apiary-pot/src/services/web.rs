//! Web (HoneyPy's Web plugin, done properly): an Apache 2.4 on Debian with WordPress and
//! phpMyAdmin login lures and a `robots.txt`. Requests are parsed fully and kept alive like
//! Apache does; posted login forms and Basic credentials become `auth.attempt` events.

use std::collections::BTreeMap;
use std::sync::Arc;

use apiary_event::{Auth, AuthMethod, Kind, Transport};
use base64::Engine as _;
use serde::Deserialize;

use super::http::{self, ReadError, Request, Response};
use super::{Handler, ServiceInfo, TcpService, options};
use crate::{Conn, SessionError};

pub(crate) const INFO: ServiceInfo = ServiceInfo {
    name: "web",
    aliases: &["Web", "http"],
    protocol: "http",
    description: "Apache 2.4 on Debian with WordPress and phpMyAdmin login lures",
    transports: &[Transport::Tcp],
    build,
};

/// Apache's default `MaxKeepAliveRequests`.
const MAX_KEEPALIVE: u32 = 100;
/// Apache's default `KeepAliveTimeout`.
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// The `Server` header and error page signature.
    #[serde(default = "default_server")]
    server: String,
}

fn default_server() -> String {
    "Apache/2.4.10 (Debian)".into()
}

struct Web {
    server: String,
}

fn build(_transport: Transport, table: &toml::Table) -> Result<Handler, String> {
    let o: Options = options(table)?;
    Ok(Handler::Tcp(Arc::new(Web { server: o.server })))
}

/// Path endings (lower-cased, `/` removed) that get the phpMyAdmin page. HoneyPy meant these;
/// its list had two entries merged by a missing comma and one in upper case.
const PMA_SUFFIXES: &[&str] = &[
    "phpmyadmin",
    "phpmyadmin2",
    "phpmyadmin3",
    "phpmyadmin4",
    "phpmyadmin-2",
    "myadmin",
    "mysqladmin",
    "mysql-admin",
    "mysqlmanager",
    "pma",
    "pma2005",
    "pma2011",
    "pma2012",
    "pma2013",
    "pma2014",
    "pma2015",
    "pma2016",
    "pma2017",
    "pma2018",
    "sqlweb",
    "websql",
    "webadmin",
    "sqlwebsql",
    "sqlmanager",
    "mysqldbadmin",
    "dbwebadmin",
    "dbadmin",
    "phpmyadmin.php",
    "admin.php",
];

/// Form fields that carry a user name or a password in the lures and in common login forms.
const USER_FIELDS: &[&str] =
    &["log", "pma_username", "username", "user", "login", "email", "uname", "usr", "user_login"];
const PASS_FIELDS: &[&str] =
    &["pwd", "pma_password", "password", "pass", "passwd", "user_password", "pw"];

/// Paths that ask for Basic authentication, to collect the credentials scanners try.
const BASIC_PATHS: &[&str] = &["/manager/html", "/admin", "/admin/", "/server-status"];

enum Page {
    Default,
    Robots,
    WpLogin,
    WpAdmin,
    Pma,
    Basic,
    Forbidden,
    NotFound,
}

fn route(path: &str) -> Page {
    let lower = path.to_ascii_lowercase();
    match lower.as_str() {
        "/" | "/index.html" => return Page::Default,
        "/robots.txt" => return Page::Robots,
        "/wp-login.php" => return Page::WpLogin,
        "/wp-admin" | "/wp-admin/" => return Page::WpAdmin,
        "/customers" | "/customers/" | "/users.txt" => return Page::Forbidden,
        p if BASIC_PATHS.contains(&p) => return Page::Basic,
        _ => {}
    }
    let mut flat: String = lower.chars().filter(|c| *c != '/').collect();
    for tail in ["index.php", "index.html"] {
        if let Some(s) = flat.strip_suffix(tail) {
            flat = s.to_owned();
        }
    }
    if PMA_SUFFIXES.iter().any(|s| flat.ends_with(s)) { Page::Pma } else { Page::NotFound }
}

impl Web {
    fn error_page(&self, status: u16, message: &str, req: &Request, port: u16) -> Response {
        let title = http::reason(status);
        let host = req.header("host").map(|h| h.split(':').next().unwrap_or(h)).unwrap_or("");
        let body = format!(
            "<!DOCTYPE HTML PUBLIC \"-//IETF//DTD HTML 2.0//EN\">\n<html><head>\n<title>{status} \
             {title}</title>\n</head><body>\n<h1>{title}</h1>\n<p>{message}</p>\n<hr>\n\
             <address>{} Server at {} Port {port}</address>\n</body></html>\n",
            self.server,
            http::html_escape(if host.is_empty() { "127.0.1.1" } else { host }),
        );
        Response::new(status, "text/html; charset=iso-8859-1", body)
    }

    fn respond(&self, conn: &Conn, req: &Request) -> Response {
        let port = conn.ctx().local.port();
        if let Some(auth) = req.header("authorization") {
            capture_basic(conn, auth, req.path());
        }
        let method = req.method.as_str();
        if !matches!(method, "GET" | "HEAD" | "POST" | "OPTIONS") {
            let msg = format!(
                "The requested method {} is not allowed for this URL.",
                http::html_escape(method)
            );
            return self.error_page(405, &msg, req, port).header("Allow", "GET,HEAD,POST,OPTIONS");
        }
        if method == "OPTIONS" {
            return Response::new(200, "text/html", "").header("Allow", "GET,HEAD,POST,OPTIONS");
        }
        let path = req.path();
        let escaped = http::html_escape(path);
        match route(path) {
            Page::Default => Response::new(200, "text/html", DEBIAN_DEFAULT)
                .header("Last-Modified", "Sat, 05 Mar 2016 09:12:44 GMT")
                .header("ETag", "\"29cd-52d49ee6e7a2b\"")
                .header("Accept-Ranges", "bytes")
                .header("Vary", "Accept-Encoding"),
            Page::Robots => Response::new(200, "text/plain", ROBOTS)
                .header("Last-Modified", "Sat, 05 Mar 2016 09:12:44 GMT")
                .header("Accept-Ranges", "bytes"),
            Page::WpLogin => {
                let error = if method == "POST" {
                    capture_form(conn, req, "wordpress").map(|user| {
                        format!(
                            "<div id=\"login_error\">\t<strong>ERROR</strong>: The password you \
                             entered for the username <strong>{}</strong> is incorrect. <a \
                             href=\"/wp-login.php?action=lostpassword\">Lost your \
                             password?</a><br />\n</div>\n",
                            http::html_escape(&user)
                        )
                    })
                } else {
                    None
                };
                Response::new(200, "text/html; charset=UTF-8", wp_login(error.as_deref()))
                    .header("Expires", "Wed, 11 Jan 1984 05:00:00 GMT")
                    .header("Cache-Control", "no-cache, must-revalidate, max-age=0")
                    .header("Set-Cookie", "wordpress_test_cookie=WP+Cookie+check; path=/")
                    .header("X-Frame-Options", "SAMEORIGIN")
            }
            Page::WpAdmin => Response::new(302, "text/html; charset=UTF-8", "")
                .header("Location", "/wp-login.php?redirect_to=%2Fwp-admin%2F&reauth=1"),
            Page::Pma => {
                let error = if method == "POST" {
                    capture_form(conn, req, "phpmyadmin").map(|user| {
                        format!(
                            "<div class=\"error\">#1045 - Access denied for user '{}'@'localhost' \
                             (using password: YES)</div>\n",
                            http::html_escape(&user)
                        )
                    })
                } else {
                    None
                };
                Response::new(200, "text/html; charset=utf-8", pma_login(error.as_deref()))
                    .header("Set-Cookie", "phpMyAdmin=4n7o9t2u6h1c3p8l5q0r; path=/; HttpOnly")
                    .header("X-Frame-Options", "DENY")
                    .header("Cache-Control", "no-store, no-cache, must-revalidate")
            }
            Page::Basic => self
                .error_page(
                    401,
                    "This server could not verify that you\nare authorized to access the \
                     document\nrequested.  Either you supplied the wrong\ncredentials (e.g., bad \
                     password), or your\nbrowser doesn't understand how to supply\nthe \
                     credentials required.",
                    req,
                    port,
                )
                .header("WWW-Authenticate", "Basic realm=\"Restricted Content\""),
            Page::Forbidden => self.error_page(
                403,
                &format!("You don't have permission to access {escaped}\non this server."),
                req,
                port,
            ),
            Page::NotFound => {
                if method == "POST" {
                    capture_form(conn, req, "form");
                }
                self.error_page(
                    404,
                    &format!("The requested URL {escaped} was not found on this server."),
                    req,
                    port,
                )
            }
        }
    }
}

/// Emits `auth.attempt` for a posted form that carries a user name or password; returns the
/// user name.
fn capture_form(conn: &Conn, req: &Request, app: &str) -> Option<String> {
    let text = String::from_utf8_lossy(&req.body);
    let fields = http::form_fields(&text);
    let pick = |names: &[&str]| {
        fields
            .iter()
            .find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
            .map(|(_, v)| v.clone())
    };
    let username = pick(USER_FIELDS);
    let password = pick(PASS_FIELDS);
    if username.is_none() && password.is_none() {
        return None;
    }
    let mut extra = BTreeMap::new();
    extra.insert("app".into(), app.into());
    extra.insert("path".into(), req.path().into());
    let mut e = conn.event(Kind::AUTH_ATTEMPT);
    e.auth = Some(Box::new(Auth {
        method: AuthMethod::HttpForm,
        username: username.clone(),
        password,
        success: false,
        extra,
    }));
    conn.emit(e);
    Some(username.unwrap_or_default())
}

/// Emits `auth.attempt` for an `Authorization: Basic` header.
fn capture_basic(conn: &Conn, header: &str, path: &str) {
    let Some(b64) = header.strip_prefix("Basic ").or_else(|| header.strip_prefix("basic ")) else {
        return;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else { return };
    let text = String::from_utf8_lossy(&raw);
    let (user, pass) = text.split_once(':').unwrap_or((&text, ""));
    let mut extra = BTreeMap::new();
    extra.insert("path".into(), path.into());
    let mut e = conn.event(Kind::AUTH_ATTEMPT);
    e.auth = Some(Box::new(Auth {
        method: AuthMethod::HttpBasic,
        username: Some(user.into()),
        password: Some(pass.into()),
        success: false,
        extra,
    }));
    conn.emit(e);
}

/// Serves requests on one connection until either side closes; shared with the benches of
/// other HTTP emulators through [`serve_http`].
#[async_trait::async_trait]
impl TcpService for Web {
    async fn handle(&self, conn: &mut Conn) -> Result<(), SessionError> {
        serve_http(
            conn,
            Some(&self.server),
            |conn, req| self.respond(conn, req),
            |conn, status| {
                self.error_page(
                    status,
                    bad_request_text(status),
                    &Request::default(),
                    conn.ctx().local.port(),
                )
            },
        )
        .await
    }
}

fn bad_request_text(status: u16) -> &'static str {
    match status {
        413 => {
            "The requested resource<br />/<br />\ndoes not allow request data with POST \
                requests, or the amount of data provided in\nthe request exceeds the capacity \
                limit."
        }
        _ => "Your browser sent a request that this server could not understand.<br />",
    }
}

/// The keep-alive loop of an HTTP emulator: read a request, answer it, record it.
/// `server` is the `Server` header of an Apache-style reply; `None` answers Netty-style.
pub(crate) async fn serve_http(
    conn: &mut Conn,
    server: Option<&str>,
    respond: impl Fn(&Conn, &Request) -> Response + Send + Sync,
    error: impl Fn(&Conn, u16) -> Response + Send + Sync,
) -> Result<(), SessionError> {
    let mut served = 0u32;
    loop {
        let read = if served == 0 {
            http::read_request(conn).await
        } else {
            match tokio::time::timeout(KEEPALIVE_TIMEOUT, http::read_request(conn)).await {
                Ok(r) => r,
                // Apache drops an idle keep-alive connection without a word.
                Err(_) => return Ok(()),
            }
        };
        let req = match read {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(ReadError::Session(e)) => return Err(e),
            Err(e) => {
                let status = if matches!(e, ReadError::BodyTooLarge) { 413 } else { 400 };
                let mut ev = conn.event(Kind::PROTOCOL_ERROR);
                ev.message = Some(format!("http: {e}"));
                conn.emit(ev);
                let resp = error(conn, status);
                let out = match server {
                    Some(server) => resp.encode("HTTP/1.1", server, None),
                    None => resp.encode_netty("HTTP/1.1"),
                };
                conn.tx(&out).await?;
                return Ok(());
            }
        };
        served += 1;
        let mut resp = respond(conn, &req);
        resp.send_body = req.method != "HEAD";
        let keep = req.keep_alive() && served < MAX_KEEPALIVE;
        http::record(conn, &req, resp.status);
        let out = match server {
            Some(server) => {
                resp.encode(req.version(), server, keep.then(|| MAX_KEEPALIVE - served))
            }
            None => resp.encode_netty(req.version()),
        };
        conn.tx(&out).await?;
        if !keep {
            return Ok(());
        }
    }
}

const ROBOTS: &str = "User-agent: *\nDisallow: /customers\nDisallow: /users.txt\n";

const DEBIAN_DEFAULT: &str = "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\" \
\"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">
<html xmlns=\"http://www.w3.org/1999/xhtml\">
  <head>
    <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />
    <title>Apache2 Debian Default Page: It works</title>
  </head>
  <body>
    <div class=\"main_page\">
      <div class=\"page_header floating_element\">
        <span class=\"floating_element\">
          Apache2 Debian Default Page
        </span>
      </div>
      <div class=\"content_section floating_element\">
        <div class=\"section_header section_header_red\">
          <div id=\"about\"></div>
          It works!
        </div>
        <div class=\"content_section_text\">
          <p>
                This is the default welcome page used to test the correct 
                operation of the Apache2 server after installation on Debian systems.
                If you can read this page, it means that the Apache HTTP server installed at
                this site is working properly. You should <b>replace this file</b> (located at
                <tt>/var/www/html/index.html</tt>) before continuing to operate your HTTP server.
          </p>
        </div>
      </div>
    </div>
  </body>
</html>
";

fn wp_login(error: Option<&str>) -> String {
    format!(
        "<!DOCTYPE html>
<!--[if IE 8]>
\t\t<html xmlns=\"http://www.w3.org/1999/xhtml\" class=\"ie8\" lang=\"en-US\">
\t<![endif]-->
\t<!--[if !(IE 8) ]><!-->
\t\t<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en-US\">
\t<!--<![endif]-->
\t<head>
\t<meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />
\t<title>Log In &lsaquo; Blog &#8212; WordPress</title>
<link rel='stylesheet' href='/wp-admin/load-styles.php?c=0&amp;dir=ltr&amp;load%5B%5D=dashicons,buttons,forms,l10n,login&amp;ver=4.9.8' type='text/css' media='all' />
<meta name='robots' content='noindex,noarchive' />
\t</head>
\t<body class=\"login login-action-login wp-core-ui  locale-en-us\">
\t\t<div id=\"login\">
\t\t<h1><a href=\"https://wordpress.org/\" title=\"Powered by WordPress\" tabindex=\"-1\">Blog</a></h1>
\t{}
<form name=\"loginform\" id=\"loginform\" action=\"/wp-login.php\" method=\"post\">
\t<p>
\t\t<label for=\"user_login\">Username or Email Address<br />
\t\t<input type=\"text\" name=\"log\" id=\"user_login\" class=\"input\" value=\"\" size=\"20\" /></label>
\t</p>
\t<p>
\t\t<label for=\"user_pass\">Password<br />
\t\t<input type=\"password\" name=\"pwd\" id=\"user_pass\" class=\"input\" value=\"\" size=\"20\" /></label>
\t</p>
\t<p class=\"forgetmenot\"><label for=\"rememberme\"><input name=\"rememberme\" type=\"checkbox\" id=\"rememberme\" value=\"forever\"  /> Remember Me</label></p>
\t<p class=\"submit\">
\t\t<input type=\"submit\" name=\"wp-submit\" id=\"wp-submit\" class=\"button button-primary button-large\" value=\"Log In\" />
\t\t<input type=\"hidden\" name=\"redirect_to\" value=\"/wp-admin/\" />
\t\t<input type=\"hidden\" name=\"testcookie\" value=\"1\" />
\t</p>
</form>
<p id=\"nav\">
\t<a href=\"/wp-login.php?action=lostpassword\">Lost your password?</a>
</p>
<p id=\"backtoblog\"><a href=\"/\">&larr; Back to Blog</a></p>
\t</div>
\t<div class=\"clear\"></div>
\t</body>
\t</html>
",
        error.unwrap_or("")
    )
}

fn pma_login(error: Option<&str>) -> String {
    format!(
        "<!DOCTYPE HTML>
<html lang='en' dir='ltr'>
<head>
<meta charset=\"utf-8\" />
<meta name=\"referrer\" content=\"no-referrer\" />
<meta name=\"robots\" content=\"noindex,nofollow\" />
<title>phpMyAdmin</title>
<link rel=\"stylesheet\" type=\"text/css\" href=\"phpmyadmin.css.php?nocache=4589311011ltr&amp;server=1\" />
</head>
<body class=\"loginform\">
<div class=\"container\">
<a href=\"./url.php?url=https%3A%2F%2Fwww.phpmyadmin.net%2F\" target=\"_blank\" rel=\"noopener noreferrer\" class=\"logo\"><img src=\"./themes/pmahomme/img/logo_right.png\" id=\"imLogo\" name=\"imLogo\" alt=\"phpMyAdmin\" border=\"0\" /></a>
<h1>Welcome to <bdo dir=\"ltr\" lang=\"en\">phpMyAdmin</bdo></h1>
{}<form method=\"post\" id=\"login_form\" action=\"index.php\" name=\"login_form\" class=\"disableAjax login hide js-show\">
<fieldset>
<legend>Log in<a href=\"./doc/html/index.html\" target=\"documentation\"><img src=\"themes/dot.gif\" title=\"Documentation\" alt=\"Documentation\" class=\"icon ic_b_help\" /></a></legend>
<div class=\"item\">
<label for=\"input_username\">Username:</label>
<input type=\"text\" name=\"pma_username\" id=\"input_username\" value=\"\" size=\"24\" class=\"textfield\"/>
</div>
<div class=\"item\">
<label for=\"input_password\">Password:</label>
<input type=\"password\" name=\"pma_password\" id=\"input_password\" value=\"\" size=\"24\" class=\"textfield\" />
</div>
<input type=\"hidden\" name=\"server\" value=\"1\" />
</fieldset>
<fieldset class=\"tblFooters\">
<input value=\"Go\" type=\"submit\" id=\"input_go\" />
<input type=\"hidden\" name=\"target\" value=\"index.php\" />
<input type=\"hidden\" name=\"token\" value=\"4f3b2a1c0d9e8f7a6b5c4d3e2f1a0b9c\" />
</fieldset>
</form>
</div>
</body>
</html>
",
        error.unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::{Page, route};

    #[test]
    fn routes_lures_and_fixed_suffixes() {
        assert!(matches!(route("/"), Page::Default));
        assert!(matches!(route("/robots.txt"), Page::Robots));
        assert!(matches!(route("/WP-LOGIN.PHP"), Page::WpLogin));
        for p in
            ["/phpMyAdmin/", "/pma/index.php", "/db/sqlwebsql/", "/mysqldbadmin", "/dbwebadmin/"]
        {
            assert!(matches!(route(p), Page::Pma), "{p}");
        }
        assert!(matches!(route("/nothing.html"), Page::NotFound));
        assert!(matches!(route("/users.txt"), Page::Forbidden));
        assert!(matches!(route("/manager/html"), Page::Basic));
    }
}
