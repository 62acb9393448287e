//! Telnet (Windows), HoneyPy's TelnetWindows: the Microsoft Telnet Service login with its
//! option negotiation; three attempts are captured as `auth.attempt`, then the connection
//! closes. Nobody ever gets in.

use std::sync::Arc;

use apiary_event::Transport;

use super::telnet::{TelnetIo, cmd, opt, record_login};
use super::{Handler, ServiceInfo, TcpService, no_options};
use crate::{Conn, SessionError};

pub(crate) const INFO: ServiceInfo = ServiceInfo {
    name: "telnet_windows",
    aliases: &["TelnetWindows"],
    protocol: "telnet",
    description: "Microsoft Telnet Service login (three attempts captured)",
    transports: &[Transport::Tcp],
    build,
};

const ATTEMPTS: u32 = 3;

/// What tlntsvr.exe sends first: NTLM authentication, echo, go-ahead suppression, environment,
/// window size and binary mode.
const GREETING: &[u8] = &[
    cmd::IAC,
    cmd::DO,
    opt::AUTHENTICATION,
    cmd::IAC,
    cmd::WILL,
    opt::ECHO,
    cmd::IAC,
    cmd::WILL,
    opt::SGA,
    cmd::IAC,
    cmd::DO,
    opt::NEW_ENVIRON,
    cmd::IAC,
    cmd::DO,
    opt::NAWS,
    cmd::IAC,
    cmd::DO,
    opt::BINARY,
    cmd::IAC,
    cmd::WILL,
    opt::BINARY,
];
const WANTED: &[u8] = &[opt::NEW_ENVIRON, opt::NAWS, opt::BINARY];

struct TelnetWindows;

fn build(_transport: Transport, table: &toml::Table) -> Result<Handler, String> {
    no_options(table)?;
    Ok(Handler::Tcp(Arc::new(TelnetWindows)))
}

#[async_trait::async_trait]
impl TcpService for TelnetWindows {
    async fn handle(&self, conn: &mut Conn) -> Result<(), SessionError> {
        let mut io = TelnetIo::new(WANTED, 256);
        let mut hello = GREETING.to_vec();
        hello.extend_from_slice(b"Welcome to Microsoft Telnet Service \r\n\n\rlogin: ");
        conn.tx(&hello).await?;
        for attempt in 1..=ATTEMPTS {
            let Some(user) = io.line(conn, true).await? else { return Ok(()) };
            conn.tx(b"\n\rpassword: ").await?;
            let Some(pass) = io.line(conn, false).await? else { return Ok(()) };
            record_login(conn, user.trim(), &pass, false, &io);
            conn.sleep(std::time::Duration::from_secs(1)).await?;
            conn.tx(b"\n\rThe handle is invalid.\r\n\n\rLogin Failed\r\n\n\r").await?;
            if attempt < ATTEMPTS {
                conn.tx(b"login: ").await?;
            }
        }
        Ok(())
    }
}
