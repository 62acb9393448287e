//! What the node remembers across restarts, in `<state_dir>/state.json` (mode 0600): the id
//! the Core gave it, a TOTP secret the Core issued, the last TOTP step it used, and the pots
//! it has installed. Written atomically (temporary file, fsync, rename).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pots::PotSpec;

/// The state file is ours; anything bigger than this is not.
const MAX_STATE: u64 = 4 << 20;

/// The node's persistent state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct State {
    /// The Core-assigned id (0 before the first accepted registration).
    #[serde(default)]
    pub(crate) node_id: u64,
    /// A TOTP secret the Core issued (token enrollment, open enrollment).
    #[serde(default)]
    pub(crate) totp_secret: Option<String>,
    /// The last TOTP step sent in an accepted registration; the Core refuses it again.
    #[serde(default)]
    pub(crate) last_step: Option<u64>,
    /// Installed pots, with whether each should be running.
    #[serde(default)]
    pub(crate) pots: Vec<PotSpec>,
}

/// Loads and saves [`State`].
#[derive(Debug, Clone)]
pub(crate) struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub(crate) fn new(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self { path: dir.join("state.json") })
    }

    /// The saved state, or the empty state when there is none yet. A corrupt file is an error:
    /// silently starting over would lose the node's identity.
    pub(crate) fn load(&self) -> std::io::Result<State> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(e),
        };
        if meta.len() > MAX_STATE {
            return Err(std::io::Error::other(format!(
                "{} is larger than {MAX_STATE} bytes",
                self.path.display()
            )));
        }
        let text = std::fs::read(&self.path)?;
        let state: State = serde_json::from_slice(&text)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", self.path.display())))?;
        Ok(state)
    }

    pub(crate) fn save(&self, state: &State) -> std::io::Result<()> {
        use std::io::Write as _;
        let tmp = self.path.with_extension("json.tmp");
        let body = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(&body)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
