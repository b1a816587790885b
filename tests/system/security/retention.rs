//! Retention: what is kept only for a while is deleted by the daily `retention` job.

use crate::helpers::{TestApp, eventually, member_phone};
use krug_client::expect;
use serde_json::json;
use uuid::Uuid;

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&app.db)
        .await
        .unwrap()
}

/// Old login codes, refresh tokens of dead sessions, finished outbox rows and old scan
/// requests go; what is still of use stays — the rotated token of a live session too, since
/// presenting it again is how a theft is recognised.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_schedule_purges_what_is_past_its_period() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let member = app.sign_in(&member_phone()).await;
    let me = expect(member.get("/users/me").await.unwrap(), 200).unwrap();
    let user_id: Uuid = me.data()["id"].as_str().unwrap().parse().unwrap();

    let old = "now() - interval '400 days'";
    let statements = [
        // A login code that expired long ago, and one still running.
        format!(
            "INSERT INTO otp_codes (phone, code_hash, expires_at) VALUES ('+79990000001', 'x', {old})"
        ),
        "INSERT INTO otp_codes (phone, code_hash, expires_at) VALUES ('+79990000002', 'y', now() + interval '5 minutes')".to_owned(),
        // A session revoked long ago (two tokens), a live one with a rotated token.
        format!(
            "INSERT INTO refresh_tokens (user_id, family_id, token_hash, expires_at, rotated_at, revoked_at)
             VALUES ('{user_id}', '00000000-0000-0000-0000-00000000000a', 'dead-1', {old}, {old}, {old}),
                    ('{user_id}', '00000000-0000-0000-0000-00000000000a', 'dead-2', {old}, NULL, {old}),
                    ('{user_id}', '00000000-0000-0000-0000-00000000000b', 'live-rotated', now() + interval '1 day', {old}, NULL),
                    ('{user_id}', '00000000-0000-0000-0000-00000000000b', 'live-current', now() + interval '30 days', NULL, NULL)"
        ),
        // An outbox row finished long ago, one not finished.
        format!(
            "INSERT INTO job_outbox (job_id, queue, payload, max_attempts, finished_at, outcome)
             VALUES (gen_random_uuid(), 'notify', '{{}}', 1, {old}, 'done'),
                    (gen_random_uuid(), 'notify', '{{}}', 1, NULL, NULL)"
        ),
        // A scan from long ago, done; a recent one.
        format!(
            "INSERT INTO scan_requests (id, user_id, code, state, created_at)
             VALUES (gen_random_uuid(), '{user_id}', 'OLDOLDOLDOLD', 'done', {old}),
                    (gen_random_uuid(), '{user_id}', 'NEWNEWNEWNEW', 'failed', now())"
        ),
    ];
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&app.db)
            .await
            .unwrap();
    }

    expect(
        operator
            .post("/admin/schedules/retention/trigger", &json!({}))
            .await
            .unwrap(),
        202,
    )
    .unwrap();
    eventually(15, "the purge", || async {
        (count(
            &app,
            "SELECT count(*) FROM scan_requests WHERE code = 'OLDOLDOLDOLD'",
        )
        .await
            == 0)
            .then_some(())
    })
    .await;
    // The scan row goes last: by now every other purge has run.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM otp_codes WHERE phone = '+79990000001'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM otp_codes WHERE phone = '+79990000002'"
        )
        .await,
        1
    );
    let tokens: Vec<String> =
        sqlx::query_scalar("SELECT token_hash FROM refresh_tokens WHERE user_id = $1 AND token_hash IN ('dead-1', 'dead-2', 'live-rotated', 'live-current') ORDER BY token_hash")
            .bind(user_id)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(tokens, ["live-current", "live-rotated"]);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM job_outbox WHERE finished_at < now() - interval '300 days'"
        )
        .await,
        0
    );
    assert!(count(&app, "SELECT count(*) FROM job_outbox WHERE finished_at IS NULL AND queue = 'notify' AND payload = '{}'").await == 1);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM scan_requests WHERE code = 'NEWNEWNEWNEW'"
        )
        .await,
        1
    );
    // The member's own session, made by signing in, is untouched.
    expect(member.get("/users/me").await.unwrap(), 200).unwrap();
}
