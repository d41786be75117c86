// Ground-truth oracle for ember's internal/strictjson tests (see README.md).
//
// Reads lines "<type>\t<hex input>" on stdin and answers, per line,
// "ok\t<hex of serde_json::to_string(value)>" or "err\t<hex of error Display>".
// The types mirror the shapes of Firecracker's API structs.
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;

#[derive(Deserialize, Serialize, Debug, Clone, Copy, Default)]
enum HugePageConfig {
    #[default]
    None,
    Transparent,
    #[serde(rename = "2M")]
    Hugetlbfs2M,
}

#[derive(Deserialize, Serialize, Debug, Clone, Copy)]
enum StaticCpuTemplate {
    C3,
    T2,
    T2S,
    T2CL,
    T2A,
    V1N1,
    None,
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
struct MachineConfig {
    vcpu_count: u8,
    mem_size_mib: usize,
    #[serde(default)]
    smt: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cpu_template: Option<StaticCpuTemplate>,
    #[serde(default)]
    track_dirty_pages: bool,
    #[serde(default)]
    huge_pages: HugePageConfig,
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
struct MachineConfigUpdate {
    #[serde(default)]
    vcpu_count: Option<u8>,
    #[serde(default)]
    mem_size_mib: Option<usize>,
    #[serde(default)]
    smt: Option<bool>,
    #[serde(default)]
    cpu_template: Option<StaticCpuTemplate>,
    #[serde(default)]
    track_dirty_pages: Option<bool>,
    #[serde(default)]
    huge_pages: Option<HugePageConfig>,
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
struct BootSource {
    kernel_image_path: String,
    initrd_path: Option<String>,
    boot_args: Option<String>,
}

#[derive(Deserialize, Serialize, Debug)]
struct TokenBucket {
    size: u64,
    one_time_burst: Option<u64>,
    refill_time: u64,
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
struct RateLimiter {
    bandwidth: Option<TokenBucket>,
    ops: Option<TokenBucket>,
}

#[derive(Deserialize, Serialize, Debug, Default)]
enum CacheType {
    #[default]
    Unsafe,
    Writeback,
}

#[derive(Deserialize, Serialize, Debug)]
enum FileEngineType {
    Async,
    Sync,
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
struct Drive {
    drive_id: String,
    partuuid: Option<String>,
    is_root_device: bool,
    #[serde(default)]
    cache_type: CacheType,
    is_read_only: Option<bool>,
    path_on_host: Option<String>,
    rate_limiter: Option<RateLimiter>,
    #[serde(rename = "io_engine")]
    file_engine_type: Option<FileEngineType>,
    socket: Option<String>,
}

#[derive(Serialize, Debug, Clone, Copy)]
enum LevelFilter {
    Off,
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl<'de> Deserialize<'de> for LevelFilter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let key = String::deserialize(d)?;
        match key.to_lowercase().as_str() {
            "off" => Ok(LevelFilter::Off),
            "trace" => Ok(LevelFilter::Trace),
            "debug" => Ok(LevelFilter::Debug),
            "info" => Ok(LevelFilter::Info),
            "warn" | "warning" => Ok(LevelFilter::Warn),
            "error" => Ok(LevelFilter::Error),
            _ => Err(D::Error::custom("Invalid LevelFilter")),
        }
    }
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
struct Logger {
    log_path: Option<PathBuf>,
    level: Option<LevelFilter>,
    show_level: Option<bool>,
    show_log_origin: Option<bool>,
    module: Option<String>,
}

#[derive(Deserialize, Serialize, Debug)]
struct Metrics {
    metrics_path: PathBuf,
    #[serde(default)]
    emit_id: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    properties: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Serialize, Debug, Default)]
enum MmdsVersion {
    #[default]
    V1,
    V2,
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
struct Mmds {
    #[serde(default)]
    version: MmdsVersion,
    network_interfaces: Vec<String>,
    ipv4_address: Option<Ipv4Addr>,
    #[serde(default)]
    imds_compat: bool,
}

#[derive(Debug)]
struct MacAddr(String);

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let parts: Vec<&str> = s.split(':').collect();
        let ok = parts.len() == 6
            && parts
                .iter()
                .all(|p| p.len() == 2 && u8::from_str_radix(p, 16).is_ok());
        if ok {
            Ok(MacAddr(s))
        } else {
            Err(D::Error::custom("The provided MAC address is invalid."))
        }
    }
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
struct Net {
    iface_id: String,
    host_dev_name: String,
    guest_mac: Option<MacAddr>,
    rx_rate_limiter: Option<RateLimiter>,
    tx_rate_limiter: Option<RateLimiter>,
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
struct Ints {
    #[serde(default)]
    a: u8,
    #[serde(default)]
    b: u16,
    #[serde(default)]
    c: u32,
    #[serde(default)]
    d: u64,
    #[serde(default)]
    e: i8,
    #[serde(default)]
    f: i16,
    #[serde(default)]
    g: i32,
    #[serde(default)]
    h: i64,
    #[serde(default)]
    i: usize,
    #[serde(default)]
    j: f64,
    #[serde(default)]
    k: f32,
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize, Serialize, Debug)]
struct EmptyAllow {}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
struct One {
    a: u8,
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
struct Two {
    a: u8,
    b: bool,
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
struct WithValue {
    data: serde_json::Value,
    opt: Option<serde_json::Value>,
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
struct NetOverride {
    iface_id: String,
    host_dev_name: String,
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
struct SnapLoad {
    snapshot_path: PathBuf,
    mem_file_path: Option<PathBuf>,
    #[serde(default)]
    resume_vm: bool,
    #[serde(default)]
    network_overrides: Vec<NetOverride>,
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
struct Nest {
    next: Option<Box<Nest>>,
}

#[derive(Deserialize, Serialize, Debug)]
#[serde(deny_unknown_fields)]
struct Macs {
    macs: Vec<MacAddr>,
    #[serde(default)]
    opt: Option<Vec<Option<MacAddr>>>,
}

#[derive(Deserialize, Serialize, Debug)]
enum Lone {
    Only,
}

#[derive(Deserialize, Serialize, Debug)]
enum Never {}

fn run<T: for<'de> Deserialize<'de> + Serialize>(input: &[u8]) -> Result<String, String> {
    match serde_json::from_slice::<T>(input) {
        Ok(v) => serde_json::to_string(&v).map_err(|e| format!("SER: {e}")),
        Err(e) => Err(e.to_string()),
    }
}

fn dispatch(ty: &str, input: &[u8]) -> Result<String, String> {
    match ty {
        "mc" => run::<MachineConfig>(input),
        "mcu" => run::<MachineConfigUpdate>(input),
        "boot" => run::<BootSource>(input),
        "tb" => run::<TokenBucket>(input),
        "rl" => run::<RateLimiter>(input),
        "drive" => run::<Drive>(input),
        "logger" => run::<Logger>(input),
        "metrics" => run::<Metrics>(input),
        "mmds" => run::<Mmds>(input),
        "net" => run::<Net>(input),
        "ints" => run::<Ints>(input),
        "empty" => run::<Empty>(input),
        "empty_allow" => run::<EmptyAllow>(input),
        "one" => run::<One>(input),
        "two" => run::<Two>(input),
        "with_value" => run::<WithValue>(input),
        "snap" => run::<SnapLoad>(input),
        "nest" => run::<Nest>(input),
        "value" => run::<serde_json::Value>(input),
        "vec_string" => run::<Vec<String>>(input),
        "vec_tb" => run::<Vec<TokenBucket>>(input),
        "map_string" => run::<BTreeMap<String, String>>(input),
        "map_u32" => run::<BTreeMap<String, u32>>(input),
        "string" => run::<String>(input),
        "bool" => run::<bool>(input),
        "u8" => run::<u8>(input),
        "u16" => run::<u16>(input),
        "u32" => run::<u32>(input),
        "u64" => run::<u64>(input),
        "i8" => run::<i8>(input),
        "i16" => run::<i16>(input),
        "i32" => run::<i32>(input),
        "i64" => run::<i64>(input),
        "usize" => run::<usize>(input),
        "f64" => run::<f64>(input),
        "f32" => run::<f32>(input),
        "opt_u8" => run::<Option<u8>>(input),
        "level" => run::<LevelFilter>(input),
        "huge" => run::<HugePageConfig>(input),
        "mmds_version" => run::<MmdsVersion>(input),
        "lone" => run::<Lone>(input),
        "never" => run::<Never>(input),
        "ipv4" => run::<Ipv4Addr>(input),
        "path" => run::<PathBuf>(input),
        "mac" => run::<MacAddr>(input),
        "vec_level" => run::<Vec<LevelFilter>>(input),
        "macs" => run::<Macs>(input),
        "map_level" => run::<BTreeMap<String, LevelFilter>>(input),
        _ => Err(format!("HARNESS: unknown type {ty}")),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn escape_table() {
    // Print ranges of chars that str's Debug formatting escapes.
    let mut start: Option<u32> = None;
    for cp in 0u32..=0x10FFFF {
        let esc = match char::from_u32(cp) {
            Some(c) => {
                let s = c.to_string();
                format!("{:?}", s) != format!("\"{}\"", s)
            }
            None => false,
        };
        match (esc, start) {
            (true, None) => start = Some(cp),
            (false, Some(s)) => {
                println!("{:#x} {:#x}", s, cp - 1);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        println!("{:#x} {:#x}", s, 0x10FFFF);
    }
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--escape-table") {
        escape_table();
        return;
    }
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in stdin.lock().lines() {
        let line = line.unwrap();
        let (ty, h) = line.split_once('\t').unwrap_or((line.as_str(), ""));
        let input = unhex(h);
        let res = dispatch(ty, &input);
        match res {
            Ok(s) => writeln!(out, "ok\t{}", hex(s.as_bytes())).unwrap(),
            Err(s) => writeln!(out, "err\t{}", hex(s.as_bytes())).unwrap(),
        }
        out.flush().unwrap();
    }
}
