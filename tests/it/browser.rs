//! Opens a local HTML file in headless Chromium (Debian's `chromium`, installed by
//! scripts/system-deps.sh) and reports what the browser saw: the DOM after load, every network
//! request it made, and a PNG of the page. The report test uses it to prove a page is
//! self-contained; the tests below prove the detector sees requests when there are some.
//!
//! Requests come from Chromium's NetLog (`--log-net-log`), the browser's own record of its
//! network stack: every URL request job, WebSocket and host name lookup, whoever started it.
//! Chromium's background services are switched off by the flags in [`FLAGS`], so a page that
//! loads nothing yields an empty list; the one request no flag stops is [`SIGN_IN_PROBE`].
//! These tests need no service, only the browser; without it they skip (see [`chromium`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// What headless Chromium saw when it opened a file.
pub struct Rendered {
    /// The serialised DOM after the load event (`--dump-dom`).
    pub dom: String,
    /// Every network URL the browser requested while loading the page, and the
    /// `scheme://host[:port]` of every host it looked up (so `<link rel=preconnect>`, which makes
    /// no request, is seen too), in first-seen order without duplicates. Not seen: a
    /// `<link rel=dns-prefetch>`, which leaves no trace in this version's NetLog.
    pub requests: Vec<String>,
    /// The PNG written (the first [`WINDOW`] pixels of the page).
    pub screenshot: PathBuf,
}

/// Flags of every run, each with what it turns off. With them a plain page makes no request in
/// Chromium 148: removing `--disable-sync` brings back a spell-check dictionary download
/// (redirector.gvt1.com), and removing `--disable-features` brings back the requests listed
/// there. The other switches stop services that did not fire in a one-second offline run
/// (component and Safe Browsing updates, variations, metrics upload, domain reliability,
/// client-side phishing models); they keep the list empty on a slow or online machine.
const FLAGS: &[&str] = &[
    // New headless mode (the full browser without a window): in this version one run does
    // both --dump-dom and --screenshot, after the load event.
    "--headless",
    // Tests run as root, and Chromium refuses to sandbox itself as root. The page is ours.
    "--no-sandbox",
    // Containers often have a 64 MB /dev/shm, too small for the renderer: use /tmp instead.
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    // First-run tasks, default-browser prompt, pre-installed apps and extensions (Debian's
    // launcher loads /usr/share/chromium/extensions).
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-default-apps",
    "--disable-extensions",
    // Background services: variations, GCM, translate lists, promotions; component updater;
    // sync (and the spell-check dictionary download it gates); metrics upload; hyperlink
    // auditing pings; domain reliability beacons; Safe Browsing; crash upload.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--metrics-recording-only",
    "--no-pings",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--safebrowsing-disable-auto-update",
    "--disable-breakpad",
    // What no switch above covers, seen in this version's NetLog: the network time query
    // (clients2.google.com/time), the AI-mode eligibility request at startup
    // (www.google.com/async/folae; its twin on a sign-in change could follow an answered
    // ListAccounts online, so it is off too) and speculative DNS lookups of the default search
    // engine (www.google.com).
    "--disable-features=NetworkTimeServiceQuerying,AimServerRequestOnStartupEnabled,\
     AimServerRequestOnIdentityChangeEnabled,PreconnectToSearch",
];

/// Window size, hence screenshot size: `--screenshot` captures the viewport, so a page taller
/// than this is cut (a full-page capture would need the DevTools protocol).
const WINDOW: &str = "1280,2400";

/// A browser that has not exited by then is killed and the test fails. Not `--timeout`: that
/// stops the load and dumps a partial page as if all went well.
const KILL_AFTER: Duration = Duration::from_secs(60);

/// Chromium's own request that no flag, feature or preference turns off (Chromium 148): when a
/// profile's network is up, `IdentityManager::OnNetworkInitialized`
/// (components/signin/public/identity_manager/identity_manager.cc) asks Google which accounts
/// are signed in in the cookie jar. Tried without effect: `--allow-browser-signin=false`,
/// `signin.allowed: false` seeded in the profile's Preferences, `--incognito`, `--guest`,
/// `--gaia-url=`; CEF issue 4276 reports the same for embedders. The profile is new, so it
/// carries no cookie. Only this URL prefix and its host lookup ([`SIGN_IN_PROBE_HOST`]) are
/// dropped: a page requesting any other accounts.google.com URL is still reported.
const SIGN_IN_PROBE: &str = "https://accounts.google.com/ListAccounts?";
/// The host lookup of [`SIGN_IN_PROBE`], as NetLog writes it.
const SIGN_IN_PROBE_HOST: &str = "https://accounts.google.com";

/// URL schemes the browser serves itself, without the network.
const LOCAL_SCHEMES: &[&str] = &["file", "data", "about", "blob", "chrome", "chrome-untrusted", "chrome-extension", "devtools"];

/// The Chromium to run: `PG2BQ_TEST_CHROMIUM` if set (used as given, so a wrong path fails
/// rather than skips), else `chromium` on `PATH`. Without one, prints why the test is skipped
/// and returns `None`, or panics under `PG2BQ_TEST_STRICT` (see `skip_unless!`):
/// `let Some(_) = chromium() else { return };`
pub fn chromium() -> Option<PathBuf> {
    let found = find_chromium();
    if found.is_none() {
        let why = "chromium is not on PATH and PG2BQ_TEST_CHROMIUM is not set (scripts/system-deps.sh installs it)";
        if std::env::var_os("PG2BQ_TEST_STRICT").is_some() {
            panic!("{why}, but PG2BQ_TEST_STRICT is set");
        }
        eprintln!("skipped: {why}");
    }
    found
}

fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PG2BQ_TEST_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("chromium")).find(|candidate| candidate.is_file())
}

/// Opens `html` (a local file) in headless Chromium with a new profile in a temporary
/// directory and returns the DOM after load, every network request ([`Rendered::requests`])
/// and a PNG of the first [`WINDOW`] pixels written to `screenshot`. One browser run, about
/// half a second for a page that loads nothing.
///
/// # Panics
/// If Chromium is missing (call [`chromium`] first to skip), fails, runs longer than
/// [`KILL_AFTER`], or writes no PNG; the message carries Chromium's stderr, dropped otherwise.
pub fn render(html: &Path, screenshot: &Path) -> Rendered {
    let binary = find_chromium().expect("no chromium: call browser::chromium() first to skip");
    let page = url::Url::from_file_path(std::path::absolute(html).unwrap()).expect("an absolute path is a file URL");
    let screenshot = std::path::absolute(screenshot).unwrap();
    let work = tempfile::tempdir().unwrap();
    let (net_log, stdout, stderr) = (work.path().join("netlog.json"), work.path().join("dom.html"), work.path().join("stderr.txt"));
    let mut command = Command::new(&binary);
    command
        .args(FLAGS)
        .arg(format!("--user-data-dir={}", work.path().join("profile").display()))
        .arg(format!("--log-net-log={}", net_log.display()))
        .arg("--dump-dom")
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("--window-size={WINDOW}"))
        .arg(page.as_str())
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).unwrap())
        .stderr(File::create(&stderr).unwrap());
    let status = wait_or_kill(command, &binary);
    let fail = |what: &str| -> ! {
        let noise = std::fs::read_to_string(&stderr).unwrap_or_default();
        panic!("{} {page}: {what}\n--- chromium stderr ---\n{noise}", binary.display())
    };
    match status {
        Some(status) if status.success() => {}
        Some(status) => fail(&format!("exited with {status}")),
        None => fail(&format!("still running after {KILL_AFTER:?}, killed")),
    }
    let png = std::fs::read(&screenshot).unwrap_or_default();
    if !png.starts_with(b"\x89PNG\r\n\x1a\n") {
        fail(&format!("no PNG at {}", screenshot.display()));
    }
    let log = std::fs::read(&net_log).unwrap_or_else(|e| fail(&format!("no NetLog at {}: {e}", net_log.display())));
    let log: serde_json::Value = serde_json::from_slice(&log).unwrap_or_else(|e| fail(&format!("unreadable NetLog: {e}")));
    Rendered { dom: std::fs::read_to_string(&stdout).unwrap(), requests: network_requests(&log), screenshot }
}

/// Runs `command` in a process group of its own; `None` if it outlived [`KILL_AFTER`], after
/// killing the group (the browser and its renderer, GPU and crash-handler processes).
fn wait_or_kill(mut command: Command, binary: &Path) -> Option<ExitStatus> {
    use std::os::unix::process::CommandExt;
    let mut child = command.process_group(0).spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let started = Instant::now();
    while started.elapsed() < KILL_AFTER {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    // The group id is the child's pid (`process_group(0)`), and the child is not reaped yet.
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
    let _ = child.wait();
    None
}

/// Network URLs in a NetLog: every event's `params.url` (URL requests, CORS requests,
/// WebSockets, stream jobs) and the `params.host` of every host lookup, minus local schemes and
/// [`SIGN_IN_PROBE`]; in first-seen order, without duplicates.
fn network_requests(log: &serde_json::Value) -> Vec<String> {
    let host_lookup = log["constants"]["logEventTypes"]["HOST_RESOLVER_MANAGER_REQUEST"].as_u64();
    let events = log["events"].as_array().expect("a NetLog has events");
    let mut requests: Vec<String> = Vec::new();
    for event in events {
        let params = &event["params"];
        let url = match params["url"].as_str() {
            Some(url) => url,
            None if event["type"].as_u64() == host_lookup => params["host"].as_str().unwrap_or(""),
            None => continue,
        };
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        let local = scheme.is_empty() || LOCAL_SCHEMES.contains(&scheme);
        let probe = url.starts_with(SIGN_IN_PROBE) || url == SIGN_IN_PROBE_HOST;
        if !local && !probe && !requests.iter().any(|seen| seen == url) {
            requests.push(url.to_string());
        }
    }
    requests
}

/// Writes `body` as page.html in a new temporary directory.
fn page(body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("page.html");
    std::fs::write(&path, body).unwrap();
    (dir, path)
}

const SELF_CONTAINED: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>self-contained</title>
<style>body { font-family: sans-serif; margin: 2em } #bars rect { fill: steelblue }</style></head>
<body><h1>Rows per table</h1>
<svg id="bars" width="320" height="120" viewBox="0 0 320 120">
<rect x="10" y="20" width="280" height="30"/><rect x="10" y="70" width="140" height="30"/></svg>
</body></html>"#;

#[test]
fn self_contained_page_makes_no_request() {
    let Some(_) = chromium() else { return };
    let (dir, html) = page(SELF_CONTAINED);
    let rendered = render(&html, &dir.path().join("shot.png"));
    assert_eq!(rendered.requests, Vec::<String>::new());
    assert!(rendered.dom.contains(r#"<svg id="bars""#), "{}", rendered.dom);
    let png = std::fs::read(&rendered.screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG: {}", rendered.screenshot.display());
}

/// The detector can fail: an image and a stylesheet from elsewhere are both seen (port 9 is
/// one Chromium refuses to connect to and .invalid never resolves, so nothing leaves).
#[test]
fn external_image_and_stylesheet_are_requests() {
    let Some(_) = chromium() else { return };
    let (dir, html) = page(
        r#"<!doctype html><html><head><meta charset="utf-8">
<link rel="stylesheet" href="https://example.invalid/a.css"></head>
<body><p id="text">hello</p><img src="http://127.0.0.1:9/x.png"></body></html>"#,
    );
    let rendered = render(&html, &dir.path().join("shot.png"));
    for url in ["http://127.0.0.1:9/x.png", "https://example.invalid/a.css"] {
        assert!(rendered.requests.iter().any(|r| r == url), "{url} missing from {:?}", rendered.requests);
    }
    assert!(rendered.dom.contains(r#"<p id="text">"#), "{}", rendered.dom);
}

/// A Content-Security-Policy `<meta>` stops the browser before the network: the same external
/// image is never requested.
#[test]
fn csp_meta_blocks_external_image() {
    let Some(_) = chromium() else { return };
    let (dir, html) = page(
        r#"<!doctype html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<style>#text { color: #c00 }</style></head>
<body><p id="text">hello</p><img src="http://127.0.0.1:9/x.png"></body></html>"#,
    );
    let rendered = render(&html, &dir.path().join("shot.png"));
    assert_eq!(rendered.requests, Vec::<String>::new());
    assert!(rendered.dom.contains(r#"<img src="http://127.0.0.1:9/x.png">"#), "{}", rendered.dom);
}
