//! The launch environment that torchrun, Slurm scripts and Kubernetes operators set.

use std::net::IpAddr;

use super::group::GlooDevice;
use super::DistError;

/// The torchrun variables a launcher sets for each worker: the four [`LaunchEnv::from_env`]
/// requires (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), then the two it defaults.
pub const LAUNCH_VARIABLES: [&str; 6] = [
    "RANK",
    "WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
];

/// The torchrun-style environment of one worker process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchEnv {
    /// `MASTER_ADDR`: the host of rank 0's store.
    pub master_addr: String,
    /// `MASTER_PORT`: the store's port.
    pub master_port: u16,
    /// `RANK`: this process's global rank.
    pub rank: usize,
    /// `WORLD_SIZE`: the number of processes.
    pub world_size: usize,
    /// `LOCAL_RANK`: the rank on this node (defaults to `RANK`).
    pub local_rank: usize,
    /// `LOCAL_WORLD_SIZE`: processes on this node (defaults to `WORLD_SIZE`).
    pub local_world_size: usize,
}

impl LaunchEnv {
    /// Reads the launch variables from the process environment. `Ok(None)` when none of
    /// `RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT` is set (a plain single-process run);
    /// an error naming the variable when some are set but the set is incomplete, unparsable or
    /// contradictory.
    pub fn from_env() -> Result<Option<Self>, DistError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`LaunchEnv::from_env`], reading variables through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, DistError> {
        let required = &LAUNCH_VARIABLES[..4];
        let present: Vec<&str> = required
            .iter()
            .copied()
            .filter(|k| get(k).is_some())
            .collect();
        if present.is_empty() {
            return Ok(None);
        }
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|k| get(k).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(DistError::Env(format!(
                "{} set but {} missing (a distributed run needs all of RANK, WORLD_SIZE, \
                 MASTER_ADDR, MASTER_PORT)",
                present.join(", "),
                missing.join(", ")
            )));
        }
        let num = |k: &str| -> Result<Option<usize>, DistError> {
            get(k)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        DistError::Env(format!("{k}=`{v}` is not a non-negative integer"))
                    })
                })
                .transpose()
        };
        let rank = num("RANK")?.unwrap_or(0);
        let world_size = num("WORLD_SIZE")?.unwrap_or(0);
        if world_size == 0 {
            return Err(DistError::Env("WORLD_SIZE must be at least 1".into()));
        }
        if rank >= world_size {
            return Err(DistError::Env(format!(
                "RANK={rank} is not below WORLD_SIZE={world_size}"
            )));
        }
        let local_world_size = num("LOCAL_WORLD_SIZE")?.unwrap_or(world_size);
        let local_rank = num("LOCAL_RANK")?.unwrap_or(rank);
        if local_world_size == 0 || local_world_size > world_size {
            return Err(DistError::Env(format!(
                "LOCAL_WORLD_SIZE={local_world_size} must be in 1..=WORLD_SIZE={world_size}"
            )));
        }
        if local_rank >= local_world_size {
            return Err(DistError::Env(format!(
                "LOCAL_RANK={local_rank} is not below LOCAL_WORLD_SIZE={local_world_size}"
            )));
        }
        let port_text = get("MASTER_PORT").unwrap_or_default();
        let master_port = port_text
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                DistError::Env(format!(
                    "MASTER_PORT=`{port_text}` is not a port in 1..=65535"
                ))
            })?;
        let master_addr = get("MASTER_ADDR").unwrap_or_default().trim().to_owned();
        if master_addr.is_empty() {
            return Err(DistError::Env("MASTER_ADDR is empty".into()));
        }
        Ok(Some(Self {
            master_addr,
            master_port,
            rank,
            world_size,
            local_rank,
            local_world_size,
        }))
    }

    /// Whether `MASTER_ADDR` names this machine's loopback (`localhost`, `127.x.y.z`, `::1`).
    pub fn is_loopback(&self) -> bool {
        if self.master_addr == "localhost" {
            return true;
        }
        self.master_addr
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    }

    /// Gloo's transport device as torch chooses it: `GLOO_SOCKET_IFNAME` when set, the
    /// loopback address for a loopback `MASTER_ADDR`, else the host name's address.
    pub fn gloo_device(&self) -> GlooDevice {
        match std::env::var("GLOO_SOCKET_IFNAME") {
            Ok(iface) if !iface.is_empty() => GlooDevice::Interface(iface),
            _ if self.is_loopback() => GlooDevice::Hostname("127.0.0.1".into()),
            _ => GlooDevice::Default,
        }
    }
}
