//! The status page in a real browser: Debian's chromium, headless, renders the page and runs
//! its script against the exporter; the DOM it ends with is checked. Skipped when chromium is
//! not installed, unless `HSS_EXPORTER_REQUIRE_CHROMIUM=1` (as in CI).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use hss_exporter::model::RegistryType;

fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    });
    if found.is_none() {
        assert!(
            std::env::var("HSS_EXPORTER_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "chromium is required (HSS_EXPORTER_REQUIRE_CHROMIUM=1) but not installed"
        );
        eprintln!("skipped: chromium not installed (apt-get install chromium)");
    }
    found
}

/// The DOM of `url` once its script has run (and fetched `/status.json`).
async fn dom(chromium: &PathBuf, url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut command = Command::new(chromium);
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=5000",
        "--dump-dom",
    ]);
    command.arg(format!("--user-data-dir={}", profile.path().display()));
    command.arg(url);
    let output = bounded(
        Duration::from_secs(60),
        "chromium to render the page",
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .unwrap()
    .expect("run chromium");
    assert!(
        output.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The counts of an account's summary row: targets, up, down, stale, pending.
fn counts(dom: &str, account: &str) -> Option<[u64; 5]> {
    let start = dom.find(&format!("<tr data-account=\"{account}\""))?;
    let row = &dom[start..start + dom[start..].find("</tr>")?];
    let count = |name: &str| -> Option<u64> {
        let at = row.find(&format!("data-count=\"{name}\">"))? + name.len() + 14;
        row[at..].split('<').next()?.parse().ok()
    };
    Some([
        count("targets")?,
        count("up")?,
        count("down")?,
        count("stale")?,
        count("pending")?,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_the_demo_with_its_counts_and_filter() {
    let Some(chromium) = chromium() else {
        return;
    };
    let addr = format!("127.0.0.1:{}", free_port());
    let demo = Running::reading_stdout(&["demo", "--web.listen-address", &addr]);
    let base = format!("http://{addr}");
    wait_for_url(
        &format!("{base}/metrics"),
        Duration::from_secs(30),
        "every target of the demo polled",
        |b| {
            parse(b)
                .keys()
                .filter(|(name, _)| name == "hss_registry_statistics_up")
                .count()
                == 4
        },
    )
    .await;

    let page = dom(&chromium, &format!("{base}/")).await;
    let prod = counts(&page, "prod").unwrap_or_else(|| panic!("no summary of prod:\n{page}"));
    let staging = counts(&page, "staging").expect("a summary of staging");
    assert_eq!(prod[0], 3, "prod polls three registry types: {prod:?}");
    assert_eq!(staging[0], 1, "{staging:?}");
    for c in [prod, staging] {
        assert_eq!(
            c[1] + c[2] + c[3] + c[4],
            c[0],
            "every target counted once: {c:?}"
        );
        assert_eq!(c[4], 0, "every target has been polled: {c:?}");
    }
    assert_eq!(staging[1], 1, "staging is healthy");
    assert!(
        page.contains(" / 30 calls in the last minute"),
        "the budget's use is shown"
    );
    assert!(page.contains("4 targets"), "the total");
    // prod's registry listing, with the demo's 23 registries.
    let listing = format!(
        "<tr data-listing=\"{}\" data-state=\"up\">",
        hss_exporter::demo::PROD_PROJECT
    );
    let at = page
        .find(&listing)
        .unwrap_or_else(|| panic!("no listing row:\n{page}"));
    assert!(
        page[at..].starts_with(&format!(
            "{listing}<td>{}</td><td></td><td class=\"up\">up</td><td class=\"num\">23</td>",
            hss_exporter::demo::PROD_PROJECT
        )),
        "{}",
        &page[at..at + 300]
    );
    // Target rows: prod's problems make it open; staging, healthy, stays collapsed.
    assert!(
        page.contains("<td>Harbor</td>"),
        "prod's targets are listed"
    );

    // The filter, as a link to the page would carry it.
    let filtered = dom(&chromium, &format!("{base}/?filter=jfrog")).await;
    assert!(filtered.contains("1 of 4 targets match"), "{filtered}");
    assert!(filtered.contains("<td>Jfrog</td>"));
    assert!(!filtered.contains("<td>Harbor</td>") && !filtered.contains("<td>SwrPrivate</td>"));
    assert!(
        counts(&filtered, "staging").is_none(),
        "accounts without a match are hidden"
    );
    let (status, _) = demo.stop(Duration::from_secs(10)).await;
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_labels_as_text_never_as_markup() {
    let Some(chromium) = chromium() else {
        return;
    };
    let (sim, server) = sim().await;
    let eps = "<img src=x onerror=document.title='owned'>";
    sim.set_stats(P1, Some(eps), RegistryType::Harbor, 1, 1);
    let yaml = Config::new()
        .account(account("prod").project_in(P1, Some(eps), &["Harbor"]))
        .yaml();
    // A failing target: its account's rows are shown open.
    sim.add_fault(hss_exporter::sim::FaultRule::always(
        hss_exporter::sim::Fault::Status(500),
    ));
    let exporter = exporter(&yaml, &server).await;
    wait_for(&exporter, Duration::from_secs(10), "the target down", |b| {
        b.contains("hss_registry_statistics_up{") && b.contains("} 0\n")
    })
    .await;
    let page = dom(&chromium, &format!("http://{}/", exporter.addr)).await;
    assert!(
        page.contains("&lt;img src=x onerror"),
        "the label shows as text:\n{page}"
    );
    assert!(!page.contains("<img"), "no element made from a label");
    assert!(
        page.contains("<title>hss-exporter</title>"),
        "the script did not run any label"
    );
    assert!(page.contains("HTTP 500"), "the last error is shown");
    exporter.shutdown().await;
}
