//! E-mail (issue 16) through the real SMTP sink that `scripts/services.sh` runs (aiosmtpd on
//! 127.0.0.1:1025, filing each message in the Maildir `KRUG_MAIL_DIR`, default
//! `/tmp/krug-mail`): tickets of paid seats (with the ЮKassa simulator), at most once, only
//! to an address the member gave; owners' monthly statements with their CSV.
//!
//! Tests run in parallel against one sink, so each uses recipient addresses of its own and
//! reads only the messages addressed to them (aiosmtpd's `X-RcptTo` header).

use crate::{
    helpers::{Options, TestApp, eventually, member_phone},
    payments::{SECRET, SHOP, deliver, kassa, paid_event, register},
};
use base64::Engine;
use jobs::handlers::notify_job::SendEmail;
use krug_client::{ApiClient, expect};
use serde_json::json;
use simulators::yookassa::FakeYooKassa;
use std::{path::PathBuf, time::Duration};
use time::Duration as Span;
use uuid::Uuid;

const SINK: &str = "smtp://127.0.0.1:1025";

async fn app_with_mail(kassa: Option<&FakeYooKassa>) -> TestApp {
    TestApp::spawn_with(Options {
        yookassa: kassa.map(|k| (k.url.clone(), SHOP.to_owned(), SECRET.to_owned())),
        smtp_url: Some(SINK.to_owned()),
        ..Default::default()
    })
    .await
}

fn mail_dir() -> PathBuf {
    std::env::var_os("KRUG_MAIL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/krug-mail"))
}

/// An address no other test uses.
fn address(who: &str) -> String {
    format!("{who}-{}@example.test", Uuid::new_v4().simple())
}

/// The raw messages in the sink addressed to `to` (line ends as `\n`).
fn mails_to(to: &str) -> Vec<String> {
    let marker = format!("X-RcptTo: {to}");
    let mut found = vec![];
    for folder in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(mail_dir().join(folder)) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(raw) = std::fs::read_to_string(entry.path()) {
                let raw = raw.replace("\r\n", "\n");
                if raw.lines().any(|l| l == marker) {
                    found.push(raw);
                }
            }
        }
    }
    found
}

/// Waits (up to 20 s) for a first message to `to` and returns every one there is then.
async fn wait_for_mail(to: &str) -> Vec<String> {
    eventually(
        20,
        &format!("an e-mail to {to} in {}", mail_dir().display()),
        || async {
            let mails = mails_to(to);
            (!mails.is_empty()).then_some(mails)
        },
    )
    .await
}

/// Waits until the outbox says job `job_id` finished (whatever it did).
async fn wait_until_finished(app: &TestApp, job_id: Uuid) {
    let db = app.db.clone();
    eventually(20, "the e-mail job to finish", || {
        let db = db.clone();
        async move {
            let done: Option<bool> = sqlx::query_scalar(
                "SELECT finished_at IS NOT NULL FROM job_outbox WHERE job_id = $1",
            )
            .bind(job_id)
            .fetch_optional(&db)
            .await
            .unwrap();
            done.filter(|d| *d)
        }
    })
    .await;
}

/// A MIME message's leaf parts: (headers, decoded body).
fn parts(raw: &str) -> Vec<(String, String)> {
    let (head, body) = raw.split_once("\n\n").unwrap_or((raw, ""));
    // Folded header lines joined, so that `boundary=` and `filename=` are on one line.
    let head = head.replace("\n ", " ").replace("\n\t", " ");
    if let Some(boundary) = head.split("boundary=").nth(1).map(|b| {
        b.trim_start_matches('"')
            .split(['"', ';', '\n'])
            .next()
            .unwrap()
            .to_owned()
    }) {
        return body
            .split(&format!("--{boundary}"))
            .skip(1)
            .filter(|p| !p.starts_with("--"))
            .flat_map(|p| parts(p.trim_start_matches('\n')))
            .collect();
    }
    let encoding = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-transfer-encoding:")
                .map(|e| e.trim().to_owned())
        })
        .unwrap_or_default();
    let decoded = match encoding.as_str() {
        "base64" => {
            let compact: String = body.split_whitespace().collect();
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .expect("base64 body"),
            )
            .expect("UTF-8 body")
        }
        "quoted-printable" => quoted_printable(body),
        _ => body.to_owned(),
    };
    vec![(head, decoded)]
}

fn quoted_printable(body: &str) -> String {
    let joined = body.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("UTF-8 body")
}

/// The plain-text part of a message.
fn text_of(raw: &str) -> String {
    parts(raw)
        .into_iter()
        .find(|(head, _)| {
            head.to_ascii_lowercase()
                .contains("content-type: text/plain")
                && !head.to_ascii_lowercase().contains("attachment")
        })
        .map(|(_, body)| body)
        .expect("a text/plain part")
}

async fn give_email(client: &ApiClient, email: &str) {
    // Marketing by e-mail refused: tickets and statements are not marketing.
    expect(
        client
            .patch(
                "/users/me/settings",
                &json!({"email": email, "email_marketing": false}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap();
}

/// Pays for a seat and delivers ЮKassa's notification; our payment id.
async fn pay(app: &TestApp, kassa: &FakeYooKassa, member: &ApiClient, event: &str) -> Uuid {
    let (held, yookassa_id) = register(member, event).await;
    assert!(kassa.pay(&yookassa_id));
    let notification = kassa
        .notification("payment.succeeded", &yookassa_id)
        .unwrap();
    assert_eq!(deliver(app, &notification).await, "confirmed");
    held["payment_id"].as_str().unwrap().parse().unwrap()
}

/// A paid seat confirmed by ЮKassa's notification sends the member exactly one ticket, to
/// the address she gave, even though she refused marketing by e-mail; the notification
/// delivered again, and the job itself run again, send no second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_paid_seat_sends_exactly_one_ticket() {
    let kassa = kassa().await;
    let app = app_with_mail(Some(&kassa)).await;
    let operator = app.operator().await;
    let event = paid_event(&operator, 7, 3).await;
    let member = app.sign_in(&member_phone()).await;
    let to = address("ticket");
    give_email(&member, &to).await;

    let payment_id = pay(&app, &kassa, &member, &event).await;

    let mails = wait_for_mail(&to).await;
    assert_eq!(mails.len(), 1, "one ticket: {mails:?}");
    let text = text_of(&mails[0]);
    for expected in [
        "Ужин с шеф-поваром",
        "Лисичкино",
        "1500.00 ₽",
        &payment_id.to_string(),
    ] {
        assert!(
            text.contains(expected),
            "the ticket names {expected}: {text}"
        );
    }

    // ЮKassa repeats its notification: the seat is hers already, no new job.
    let yookassa_id: String =
        sqlx::query_scalar("SELECT yookassa_id FROM event_payments WHERE id = $1")
            .bind(payment_id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    let notification = kassa
        .notification("payment.succeeded", &yookassa_id)
        .unwrap();
    assert_eq!(deliver(&app, &notification).await, "confirmed");
    // The job retried: the same e-mail job again under a new job id (as after a crash
    // between the send and the job's end), through the outbox, and waited for.
    let mut again = SendEmail::Ticket { payment_id }.outbox_row();
    again.job_id = Uuid::new_v4();
    let mut tx = app.db.begin().await.unwrap();
    jobs::outbox::record_all(&mut tx, std::slice::from_ref(&again))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    jobs::outbox::relay(&app.db, &app.services.queue, std::slice::from_ref(&again))
        .await
        .unwrap();
    wait_until_finished(&app, again.job_id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        mails_to(&to).len(),
        1,
        "the retried job sent a second ticket"
    );
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications WHERE channel = 'email' AND status = 'sent' AND email = $1",
    )
    .bind(&to)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(recorded, 1);
}

/// A member who gave no address gets no e-mail, and neither does one who deleted her
/// account (her address is erased): their ticket jobs run and send nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ticket_goes_to_a_member_without_an_address_or_a_deleted_one() {
    let kassa = kassa().await;
    let app = app_with_mail(Some(&kassa)).await;
    let operator = app.operator().await;
    let event = paid_event(&operator, 7, 3).await;

    let silent = app.sign_in(&member_phone()).await;
    let silent_payment = pay(&app, &kassa, &silent, &event).await;

    let gone = app.sign_in(&member_phone()).await;
    let gone_address = address("deleted");
    give_email(&gone, &gone_address).await;
    let (held, yookassa_id) = register(&gone, &event).await;
    let gone_payment: Uuid = held["payment_id"].as_str().unwrap().parse().unwrap();
    expect(gone.delete("/users/me").await.unwrap(), 200).unwrap();
    assert!(kassa.pay(&yookassa_id));
    let notification = kassa
        .notification("payment.succeeded", &yookassa_id)
        .unwrap();
    deliver(&app, &notification).await;

    for payment_id in [silent_payment, gone_payment] {
        let job = SendEmail::Ticket { payment_id }.outbox_row();
        let recorded: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM job_outbox WHERE job_id = $1)")
                .bind(job.job_id)
                .fetch_one(&app.db)
                .await
                .unwrap();
        // Recorded with the seat's confirmation, so this test fails without the feature.
        assert!(recorded, "no ticket job for payment {payment_id}");
        wait_until_finished(&app, job.job_id).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent: i64 =
        sqlx::query_scalar("SELECT count(*) FROM notifications WHERE channel = 'email'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(sent, 0, "no e-mail without an address");
    assert!(
        mails_to(&gone_address).is_empty(),
        "a deleted member got mail"
    );
}

/// When the `settlement` job closes a month, each business's owner who gave an address
/// gets its statement with the CSV attached, the very file
/// `GET /business/settlements/{period}?format=csv` answers; an owner without an address
/// gets nothing; the job run again sends nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_month_sends_each_owner_her_statement_with_the_csv() {
    let app = app_with_mail(None).await;
    let operator = app.operator().await;
    let salon = app
        .partner(
            &operator,
            "Миндаль",
            "10",
            "+79000000150",
            "+79000000151",
            json!({}),
        )
        .await;
    let market = app
        .partner(
            &operator,
            "Лисичкино",
            "5",
            "+79000000152",
            "+79000000153",
            json!({}),
        )
        .await;
    let to = address("owner");
    give_email(&salon.owner, &to).await;
    let member = app.sign_in(&member_phone()).await;
    app.buy(&salon, &member, "1000.00", "0").await;
    app.buy(&market, &member, "1000.00", "0").await;
    let period = expect(operator.get("/admin/settlements").await.unwrap(), 200)
        .unwrap()
        .data()["items"][0]["period"]
        .as_str()
        .unwrap()
        .to_owned();

    app.services.clock.advance(Span::days(32));
    app.run_schedule(&operator, "settlement").await;

    let mails = wait_for_mail(&to).await;
    assert_eq!(mails.len(), 1, "one statement: {mails:?}");
    let attached: Vec<(String, String)> = parts(&mails[0])
        .into_iter()
        .filter(|(head, _)| head.contains("attachment"))
        .collect();
    assert_eq!(attached.len(), 1, "one file attached: {}", mails[0]);
    let (head, csv) = &attached[0];
    assert!(head.contains("text/csv"), "{head}");
    assert!(head.contains(&format!("svoy-krug-{period}.csv")), "{head}");
    let served = salon
        .owner
        .get(&format!("/business/settlements/{period}?format=csv"))
        .await
        .unwrap();
    assert_eq!(served.status, 200);
    assert_eq!(
        csv.replace("\r\n", "\n"),
        served.body.as_str().unwrap(),
        "the attachment is the API's CSV"
    );
    assert!(
        csv.lines()
            .any(|l| l.contains(&salon.id) && l.contains("100.00") && l.contains("to_operator")),
        "{csv}"
    );
    assert!(
        !csv.contains(&market.id),
        "another business's figures: {csv}"
    );
    assert!(text_of(&mails[0]).contains(&period));

    // The market's owner gave no address: its statement job runs and sends nothing.
    let market_id: Uuid = market.id.parse().unwrap();
    let period_value = domain::settlement::Period::parse(&period).unwrap();
    let market_job = &SendEmail::statements(period_value, [market_id])[0];
    wait_until_finished(&app, market_job.job_id).await;
    let market_mails: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications n JOIN business_staff s ON s.user_id = n.user_id
         WHERE n.channel = 'email' AND s.business_id = $1",
    )
    .bind(market_id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(market_mails, 0);

    // The schedule again: the month is closed already, nothing more is sent.
    app.run_schedule(&operator, "settlement").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(mails_to(&to).len(), 1, "a second statement was sent");
}
