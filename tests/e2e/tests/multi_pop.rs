//! The CDN across separate network stacks: the origin, a shield and two
//! PoPs (fra, nyc) each in a network namespace of its own on one bridge
//! (198.18.0.0/24, RFC 2544's benchmarking range), the controller and the
//! geo-DNS on the bridge's address, and 40 ms added between the tiers and
//! the origin by a delaying relay. A viewer resolves the CDN name through
//! the geo-DNS with its client subnet and fetches from its PoP's address;
//! the object comes from the origin once for both PoPs (through the
//! shield); a purge reaches every edge; a PoP whose edge dies is no longer
//! answered within the stated time. Needs root (`ip netns`), as CI runs.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use parapet_e2e::{binary, call, eventually, free_port, log_of, Process, ADMIN, BOOTSTRAP};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Heartbeats every 500 ms: an edge is unhealthy after three missed ones.
const HEARTBEAT_MS: u64 = 500;
/// How soon a dead PoP stops being answered: three heartbeats, the
/// geo-DNS's 500 ms poll, and slack for a loaded machine.
const DEAD_POP_DROPPED_WITHIN: Duration = Duration::from_secs(5);
/// Latency the relay adds each way between the tiers and the origin.
const ORIGIN_DELAY: Duration = Duration::from_millis(40);

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip runs");
    assert!(status.success(), "ip {}", args.join(" "));
}

/// Namespaces on a bridge, removed when dropped (even on failure).
struct Network {
    bridge: String,
    namespaces: Vec<String>,
}

impl Network {
    /// The bridge `<tag>br` with 198.18.0.1/24 in this namespace.
    fn new(tag: &str) -> Network {
        let bridge = format!("{tag}br");
        ip(&["link", "add", &bridge, "type", "bridge"]);
        let network = Network {
            bridge,
            namespaces: Vec::new(),
        };
        ip(&["addr", "add", "198.18.0.1/24", "dev", &network.bridge]);
        ip(&["link", "set", &network.bridge, "up"]);
        network
    }

    /// A namespace `name` at 198.18.0.`host` on the bridge.
    fn host(&mut self, name: &str, host: u8) -> String {
        ip(&["netns", "add", name]);
        self.namespaces.push(name.to_string());
        let outside = format!("{}{}", &self.bridge[..self.bridge.len() - 2], host);
        ip(&[
            "link", "add", &outside, "type", "veth", "peer", "name", "eth0", "netns", name,
        ]);
        ip(&["link", "set", &outside, "master", &self.bridge, "up"]);
        let address = format!("198.18.0.{host}/24");
        for args in [
            vec!["addr", "add", &address, "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut full = vec!["-n", name];
            full.extend(args);
            ip(&full);
        }
        format!("198.18.0.{host}")
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for namespace in &self.namespaces {
            let _ = Command::new("ip")
                .args(["netns", "del", namespace])
                .status();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
    }
}

/// `program` with `args` inside `namespace`.
fn start_in(
    namespace: &str,
    name: &str,
    program: &Path,
    args: &[String],
    env: &[(&str, String)],
    dir: &Path,
) -> Process {
    let mut full = vec![
        "netns".to_string(),
        "exec".to_string(),
        namespace.to_string(),
        program.to_string_lossy().to_string(),
    ];
    full.extend(args.iter().cloned());
    Process::start(name, Path::new("ip"), &full, env, dir)
}

/// A TCP relay on `listen` to `target`, delaying each chunk by `delay`.
async fn delaying_relay(listen: SocketAddr, target: SocketAddr, delay: Duration) {
    let listener = TcpListener::bind(listen).await.expect("relay binds");
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(target).await else {
                    return;
                };
                let (mut in_read, mut in_write) = inbound.into_split();
                let (mut out_read, mut out_write) = outbound.into_split();
                let forward = async move {
                    let mut buffer = [0u8; 16384];
                    while let Ok(n @ 1..) = in_read.read(&mut buffer).await {
                        tokio::time::sleep(delay).await;
                        if out_write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = out_write.shutdown().await;
                };
                let backward = async move {
                    let mut buffer = [0u8; 16384];
                    while let Ok(n @ 1..) = out_read.read(&mut buffer).await {
                        tokio::time::sleep(delay).await;
                        if in_write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = in_write.shutdown().await;
                };
                tokio::join!(forward, backward);
            });
        }
    });
}

/// The geo-DNS's A answer for `name` from client subnet `subnet`.
fn resolve(dns: &str, name: &str, subnet: &str) -> String {
    let output = Command::new("dig")
        .args([
            "+short",
            "+tries=1",
            "+time=1",
            &format!("@{}", dns.split(':').next().unwrap()),
        ])
        .args([
            "-p",
            dns.split(':').nth(1).unwrap(),
            name,
            "A",
            &format!("+subnet={subnet}"),
        ])
        .output()
        .expect("dig runs");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// `GET /page.html` of `www.shop.test` at `address`: status and X-Cache.
async fn fetch(address: &str) -> Option<(u16, String)> {
    let client = reqwest::Client::builder()
        .resolve("www.shop.test", format!("{address}:8080").parse().ok()?)
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let response = client
        .get("http://www.shop.test:8080/page.html")
        .send()
        .await
        .ok()?;
    let cache = response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Some((response.status().as_u16(), cache))
}

/// The edge configuration of a PoP edge behind `shield`.
fn edge_file(dir: &Path, name: &str, pop: &str, shield: Option<&str>) -> String {
    let file = dir.join(format!("{name}.toml"));
    let shield = shield.map_or(String::new(), |s| format!("shield = \"http://{s}:8080\"\n"));
    std::fs::write(
        &file,
        format!(
            "{shield}[pop]\nid = \"{pop}\"\n\n[[listener]]\naddress = \"0.0.0.0:8080\"\n\n\
             [server]\ndownstream_edges = [\"198.18.0.0/24\"]\n\n\
             [upstream]\nallow_networks = [\"198.18.0.0/15\"]\n"
        ),
    )
    .expect("edge file");
    file.to_string_lossy().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_reach_their_pop_the_origin_is_fetched_once_and_dead_pops_are_dropped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let tag = format!("pp{}", std::process::id() % 100_000);
    let mut network = Network::new(&tag);
    let origin_ns = format!("{tag}-origin");
    let origin_ip = network.host(&origin_ns, 10);
    let shield_ip = network.host(&format!("{tag}-shield"), 20);
    let fra_ip = network.host(&format!("{tag}-fra"), 30);
    let nyc_ip = network.host(&format!("{tag}-nyc"), 40);

    // The origin, logging each request; the relay in front of it.
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).expect("site");
    std::fs::write(site.join("page.html"), "<p>hello</p>").expect("page");
    let _origin = start_in(
        &origin_ns,
        "origin",
        Path::new("python3"),
        &[
            "-m",
            "http.server",
            "--bind",
            &origin_ip,
            "8000",
            "--directory",
            &site.to_string_lossy(),
        ]
        .map(String::from),
        &[],
        dir.path(),
    );
    let relay: SocketAddr = (
        "198.18.0.1".parse::<std::net::IpAddr>().unwrap(),
        free_port(),
    )
        .into();
    delaying_relay(
        relay,
        format!("{origin_ip}:8000").parse().unwrap(),
        ORIGIN_DELAY,
    )
    .await;

    // The controller and the geo-DNS on the bridge's address.
    let (rest, grpc) = (free_port(), free_port());
    let settings = dir.path().join("controller.toml");
    std::fs::write(
        &settings,
        "[upstream]\nallow_networks = [\"198.18.0.0/15\"]\n",
    )
    .expect("settings");
    let _controller = Process::start(
        "controller",
        &binary("parapet-controller"),
        &[
            "--listen",
            &format!("198.18.0.1:{rest}"),
            "--grpc-listen",
            &format!("198.18.0.1:{grpc}"),
            "--data-dir",
            &dir.path().join("controller-data").to_string_lossy(),
            "--config",
            &settings.to_string_lossy(),
            "--heartbeat-interval-ms",
            &HEARTBEAT_MS.to_string(),
        ]
        .map(String::from),
        &[
            ("PARAPET_ADMIN_TOKEN", ADMIN.to_string()),
            ("PARAPET_EDGE_BOOTSTRAP_TOKEN", BOOTSTRAP.to_string()),
        ],
        dir.path(),
    );
    parapet_e2e::wait_for_port(([198, 18, 0, 1], rest).into(), 30);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let api = |path: &str| format!("http://198.18.0.1:{rest}{path}");

    // Edges: the shield, and fra and nyc behind it.
    let controller_url = format!("http://198.18.0.1:{grpc}");
    let edge_env = [
        ("PARAPET_EDGE_BOOTSTRAP_TOKEN", BOOTSTRAP.to_string()),
        ("PARAPET_ACCESS_LOG", "off".to_string()),
    ];
    let mut edges = Vec::new();
    for (name, pop, role, shield) in [
        ("shield-1", "shd", "shield", None),
        ("fra-1", "fra", "edge", Some(shield_ip.as_str())),
        ("nyc-1", "nyc", "edge", Some(shield_ip.as_str())),
    ] {
        let config = edge_file(dir.path(), name, pop, shield);
        let args = [
            "--config",
            &config,
            "--controller",
            &controller_url,
            "--state-dir",
            &dir.path().join(name).to_string_lossy(),
            "--edge-name",
            name,
            "--pop",
            pop,
            "--role",
            role,
        ]
        .map(String::from);
        let namespace = format!("{tag}-{}", if role == "shield" { "shield" } else { pop });
        edges.push(start_in(
            &namespace,
            name,
            &binary("parapet-edge"),
            &args,
            &edge_env,
            dir.path(),
        ));
    }

    // A customer, a distribution, and a monitor token for the geo-DNS.
    let acme = parapet_e2e::create_customer(&http, &api(""), ADMIN, "acme").await;
    let (_, monitor) = call(
        &http,
        "POST",
        &api("/v1/tokens"),
        Some(ADMIN),
        Some(json!({"monitor": true, "name": "geo-dns"})),
    )
    .await;
    let monitor = monitor["token"]
        .as_str()
        .expect("monitor token")
        .to_string();
    let (status, body) = call(
        &http,
        "PUT",
        &api("/v1/distributions/shop"),
        Some(&acme),
        Some(json!({
            "domains": ["www.shop.test", "shop.cdn.test"],
            "origin": [{"url": format!("http://{relay}")}],
            "behavior": [{"path": "*", "cache": {"default_ttl": 3600}}],
        })),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let pops = dir.path().join("pops.toml");
    std::fs::write(
        &pops,
        format!(
            "[[pop]]\nid = \"fra\"\nlat = 50.11\nlon = 8.68\nipv4 = [\"{fra_ip}\"]\n\n\
             [[pop]]\nid = \"nyc\"\nlat = 40.71\nlon = -74.01\nipv4 = [\"{nyc_ip}\"]\n"
        ),
    )
    .expect("pops");
    let dns = format!("198.18.0.1:{}", free_port());
    let geoip =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/testdata/dbip-city-lite.mmdb");
    assert!(geoip.exists(), "{}: run `make testdata`", geoip.display());
    let _dns = Process::start(
        "dns",
        &binary("parapet-dns"),
        &[
            "--listen",
            &dns,
            "--zone",
            "cdn.test",
            "--pops",
            &pops.to_string_lossy(),
            "--geoip",
            &geoip.to_string_lossy(),
            "--controller",
            &api(""),
            "--controller-interval-ms",
            "500",
        ]
        .map(String::from),
        &[("PARAPET_TOKEN", monitor)],
        dir.path(),
    );

    // Each viewer resolves to its own PoP, once every edge serves.
    let europe = "5.9.0.0/24";
    let america = "8.8.8.0/24";
    eventually(
        30,
        "the geo-DNS to answer each subnet with its PoP",
        || async {
            (resolve(&dns, "shop.cdn.test", europe) == fra_ip
                && resolve(&dns, "shop.cdn.test", america) == nyc_ip)
                .then_some(())
        },
    )
    .await;
    for (subnet, want) in [(europe, "MISS"), (america, "MISS"), (europe, "HIT")] {
        let address = resolve(&dns, "shop.cdn.test", subnet);
        let (status, cache) = eventually(30, "the PoP to serve", || fetch(&address)).await;
        assert_eq!(
            (status, cache.as_str()),
            (200, want),
            "{subnet} via {address}"
        );
    }
    let origin_requests = || {
        log_of(dir.path(), "origin")
            .matches("GET /page.html")
            .count()
    };
    assert_eq!(
        origin_requests(),
        1,
        "the shield fetches once for both PoPs"
    );

    // A purge is acknowledged by all three edges, and both PoPs miss again.
    let (status, job) = call(
        &http,
        "POST",
        &api("/v1/purges"),
        Some(&acme),
        Some(json!({"distribution": "shop", "everything": true})),
    )
    .await;
    assert_eq!(status, 202, "{job}");
    let job_path = api(&format!("/v1/jobs/{}", job["id"].as_str().expect("job id")));
    eventually(30, "every edge to acknowledge the purge", || async {
        let (_, job) = call(&http, "GET", &job_path, Some(&acme), None).await;
        (job["progress"] == "3/3").then_some(())
    })
    .await;
    for address in [&fra_ip, &nyc_ip] {
        assert_eq!(
            fetch(address).await.map(|(_, c)| c),
            Some("MISS".to_string())
        );
    }
    assert_eq!(origin_requests(), 2);

    // fra's edge dies: Europe is answered with nyc within the stated time.
    edges[1].kill();
    let killed = Instant::now();
    eventually(
        DEAD_POP_DROPPED_WITHIN.as_secs(),
        "the geo-DNS to drop fra",
        || async { (resolve(&dns, "shop.cdn.test", europe) == nyc_ip).then_some(()) },
    )
    .await;
    let dropped_after = killed.elapsed();
    eprintln!("fra dropped {dropped_after:?} after its edge died");
    assert!(dropped_after < DEAD_POP_DROPPED_WITHIN);
}
