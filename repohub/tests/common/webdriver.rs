//! A small W3C WebDriver client over reqwest, driving Debian's headless Chromium through
//! chromedriver. Only the commands the browser test needs.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver (and the Chromium it starts) in their own process group, killed on drop.
pub struct Browser {
    child: std::process::Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

impl Browser {
    pub async fn start(log: &std::path::Path) -> Browser {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let file = std::fs::File::create(log).unwrap();
        let mut cmd = Command::new("/usr/bin/chromedriver");
        cmd.arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            // Own group, so dropping kills Chromium's processes too.
            .process_group(0);
        test_support::die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("start /usr/bin/chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http
                .get(format!("{base}/status"))
                .send()
                .await
                .ok()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": [
                        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--no-first-run", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync",
                        "--disable-dev-shm-usage",
                        format!("--user-data-dir={}", profile.path().display()),
                        "--window-size=1280,900",
                    ]
                }
            }}
        });
        let mut browser = Browser {
            child,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        let v = browser.call("POST", "/session", Some(caps)).await;
        browser.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        browser
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{}", self.base, path);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or(json!({}))),
        };
        let resp = req.send().await.expect("webdriver request");
        let v: Value = resp.json().await.expect("webdriver JSON");
        if v["value"]["error"].is_string() {
            panic!("webdriver {method} {path}: {}", v["value"]);
        }
        v.get("value").cloned().unwrap_or(v)
    }

    async fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{}", self.base, path);
        let req = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body.unwrap_or(json!({}))),
        };
        let v: Value = req
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if v["value"]["error"].is_string() {
            return Err(v["value"].to_string());
        }
        Ok(v["value"].clone())
    }

    fn s(&self, path: &str) -> String {
        format!("/session/{}{}", self.session, path)
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({ "url": url })))
            .await;
    }

    pub async fn current_url(&self) -> String {
        self.call("GET", &self.s("/url"), None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Waits up to 20 s for the page's URL to end with `suffix` (a click that submits a form
    /// returns before the browser has navigated).
    pub async fn wait_for_url(&self, suffix: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let url = self.current_url().await;
            if url.ends_with(suffix) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "still at {url}, expected …{suffix}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The element matching `css`, waiting up to 20 s for it to appear.
    pub async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self
                .try_call(
                    "POST",
                    &self.s("/element"),
                    Some(json!({ "using": "css selector", "value": css })),
                )
                .await
            {
                Ok(v) => return v[ELEMENT].as_str().unwrap_or("").to_string(),
                Err(e) => assert!(Instant::now() < deadline, "no element {css}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn count(&self, css: &str) -> usize {
        self.call(
            "POST",
            &self.s("/elements"),
            Some(json!({ "using": "css selector", "value": css })),
        )
        .await
        .as_array()
        .map_or(0, Vec::len)
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.call("POST", &self.s(&format!("/element/{el}/clear")), None)
            .await;
        self.call(
            "POST",
            &self.s(&format!("/element/{el}/value")),
            Some(json!({ "text": text })),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.call("POST", &self.s(&format!("/element/{el}/click")), None)
            .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let el = self.find(css).await;
        self.call("GET", &self.s(&format!("/element/{el}/text")), None)
            .await
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub async fn set_window(&self, width: u32, height: u32) {
        self.call(
            "POST",
            &self.s("/window/rect"),
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let b64 = self.call("GET", &self.s("/screenshot"), None).await;
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or(""))
            .expect("screenshot is base64")
    }

    pub async fn quit(&self) {
        let _ = self
            .http
            .delete(format!("{}{}", self.base, self.s("")))
            .send()
            .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and every Chromium process it started — but only
        // if it really is chromedriver's own group, never the test's.
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let own_group = rustix::process::getpgid(Some(pid)).is_ok_and(|g| g == pid);
            let ours = rustix::process::getpgid(None).ok();
            if own_group && ours != Some(pid) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
