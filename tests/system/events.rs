//! Members-only events: who sees them, who may register and propose, seats that are never
//! over-booked, and the day-before reminder.

use crate::helpers::{TestApp, eventually, member_phone};
use futures::future::join_all;
use jobs::{QueueName, inspect::JobState};
use krug_client::{ApiClient, expect};
use serde_json::{Value, json};
use std::sync::Arc;
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

/// A proposal body a week ahead, with `overrides` on top.
fn proposal(overrides: Value) -> Value {
    let mut body = json!({
        "title": "Вечер сыров в Лисичкино",
        "description": "Дегустация с шеф-сыроваром.",
        "date": rfc3339(OffsetDateTime::now_utc() + Duration::days(7)),
        "location": "Лисичкино, Малая Бронная, 28",
        "max_participants": 20,
    });
    for (key, value) in overrides.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

/// An event the operator proposes and approves: a published event.
async fn published_event(operator: &ApiClient, overrides: Value) -> Value {
    let created = expect(
        operator
            .post("/events", &proposal(overrides))
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    let id = created.data()["id"].as_str().unwrap().to_owned();
    expect(
        operator
            .patch(
                &format!("/admin/events/{id}"),
                &json!({"status": "approved"}),
            )
            .await
            .unwrap(),
        200,
    )
    .unwrap()
    .data()
    .clone()
}

async fn make_vip(app: &TestApp, phone: &str) {
    sqlx::query("UPDATE users SET status_tier = 'VIP' WHERE phone = $1")
        .bind(phone)
        .execute(&app.db)
        .await
        .unwrap();
}

/// `n` members with distinct phones, signed in ten at a time (each sign-in waits for its
/// SMS job).
async fn members(app: &TestApp, n: usize) -> Vec<ApiClient> {
    let base = rand::random_range(0..9_000_000u32);
    let phones: Vec<String> = (0..n as u32)
        .map(|i| format!("+7998{:07}", base + i))
        .collect();
    let mut signed_in = Vec::with_capacity(n);
    for batch in phones.chunks(10) {
        signed_in.extend(join_all(batch.iter().map(|phone| app.sign_in(phone))).await);
    }
    signed_in
}

fn ids(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect()
}

/// Members see published events (with the fields of DESIGN.md) and their own proposals,
/// not other members' proposals; the list filters by status and local dates and pages by
/// cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_see_published_events_and_their_own_proposals() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let soon = published_event(
        &operator,
        json!({"date": rfc3339(OffsetDateTime::now_utc() + Duration::days(2))}),
    )
    .await;
    let later = published_event(
        &operator,
        json!({"title": "Йога на крыше", "min_status_tier": "VIP",
               "date": rfc3339(OffsetDateTime::now_utc() + Duration::days(30))}),
    )
    .await;
    let vip_phone = member_phone();
    let vip = app.sign_in(&vip_phone).await;
    make_vip(&app, &vip_phone).await;
    let own = expect(
        vip.post("/events", &proposal(json!({"title": "Клуб любителей чая"})))
            .await
            .unwrap(),
        201,
    )
    .unwrap()
    .data()
    .clone();
    let member = app.sign_in(&member_phone()).await;

    let listed = expect(member.get("/events").await.unwrap(), 200).unwrap();
    assert_eq!(listed.body["success"], true);
    assert_eq!(
        ids(listed.data()),
        [soon["id"].as_str().unwrap(), later["id"].as_str().unwrap()],
        "soonest first, no one else's proposal: {}",
        listed.body
    );
    let event = &listed.data()["items"][0];
    for field in [
        "id",
        "title",
        "description",
        "date",
        "location",
        "max_participants",
        "min_status_tier",
        "status",
        "registered_count",
    ] {
        assert!(!event[field].is_null(), "{field} in {event}");
    }
    assert_eq!(event["status"], "approved");
    assert_eq!(event["min_status_tier"], "Insider");
    assert_eq!(event["registered_count"], 0);
    assert_eq!(event["max_participants"], 20);
    assert!(OffsetDateTime::parse(event["date"].as_str().unwrap(), &Rfc3339).is_ok());

    let one = expect(
        member
            .get(&format!("/events/{}", later["id"].as_str().unwrap()))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(one.data()["title"], "Йога на крыше");
    assert_eq!(one.data()["min_status_tier"], "VIP");
    let hidden = member
        .get(&format!("/events/{}", own["id"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(
        (hidden.status, hidden.error_code()),
        (404, Some("event_not_found"))
    );

    let mine = expect(vip.get("/events").await.unwrap(), 200).unwrap();
    assert!(ids(mine.data()).contains(&own["id"].as_str().unwrap()));
    let proposed = expect(vip.get("/events?status=proposed").await.unwrap(), 200).unwrap();
    assert_eq!(ids(proposed.data()), [own["id"].as_str().unwrap()]);
    let everything = expect(operator.get("/events").await.unwrap(), 200).unwrap();
    assert_eq!(ids(everything.data()).len(), 3, "operators see all");

    let in_two_days = (OffsetDateTime::now_utc() + Duration::days(2)).date();
    let window = expect(
        member
            .get(&format!(
                "/events?from={}&to={}",
                in_two_days - Duration::days(1),
                in_two_days + Duration::days(1)
            ))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(ids(window.data()), [soon["id"].as_str().unwrap()]);

    let first = expect(member.get("/events?limit=1").await.unwrap(), 200).unwrap();
    assert_eq!(ids(first.data()), [soon["id"].as_str().unwrap()]);
    let cursor = first.data()["next_cursor"].as_str().unwrap();
    let second = expect(
        member
            .get(&format!("/events?limit=1&cursor={cursor}"))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(ids(second.data()), [later["id"].as_str().unwrap()]);
    assert!(second.data()["next_cursor"].is_null());

    let nonsense = member.get("/events?status=someday").await.unwrap();
    assert_eq!(
        (nonsense.status, nonsense.error_code()),
        (422, Some("invalid_status"))
    );
}

/// A member below the event's `min_status_tier` is refused with 403 `tier_too_low`, and
/// registers once their tier (read from the database, not the token) is high enough.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_needs_the_events_status_tier() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let event = published_event(&operator, json!({"min_status_tier": "VIP"})).await;
    let register = format!("/events/{}/register", event["id"].as_str().unwrap());
    let phone = member_phone();
    let member = app.sign_in(&phone).await;

    let refused = member.post(&register, &json!({})).await.unwrap();
    assert_eq!(
        (refused.status, refused.error_code()),
        (403, Some("tier_too_low")),
        "{}",
        refused.body
    );
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("VIP")
    );

    make_vip(&app, &phone).await;
    let registered = expect(member.post(&register, &json!({})).await.unwrap(), 201).unwrap();
    assert_eq!(registered.data()["registered_count"], 1);
    assert_eq!(registered.data()["is_registered"], true);
}

/// Fifty members racing for the one remaining seat: exactly one gets it, the rest hear 409
/// `event_full`, and the count never passes the capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_members_racing_for_the_last_seat_book_it_once() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let event = published_event(&operator, json!({"max_participants": 3})).await;
    let id = event["id"].as_str().unwrap().to_owned();
    let register = format!("/events/{id}/register");
    let early = members(&app, 2).await;
    for member in &early {
        expect(member.post(&register, &json!({})).await.unwrap(), 201).unwrap();
    }
    let racers = members(&app, 50).await;

    let start = Arc::new(tokio::sync::Barrier::new(racers.len()));
    let tasks: Vec<_> = racers
        .into_iter()
        .map(|member| {
            let start = start.clone();
            let register = register.clone();
            tokio::spawn(async move {
                start.wait().await;
                member.post(&register, &json!({})).await.unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }

    let statuses: Vec<u16> = outcomes.iter().map(|r| r.status).collect();
    let won = statuses.iter().filter(|s| matches!(s, 200 | 201)).count();
    assert_eq!(won, 1, "exactly one booking: {statuses:?}");
    let refused: Vec<_> = outcomes
        .iter()
        .filter(|r| !(r.status == 200 || r.status == 201))
        .map(|r| (r.status, r.error_code().map(str::to_owned)))
        .collect();
    assert!(
        refused
            .iter()
            .all(|r| *r == (409, Some("event_full".to_owned()))),
        "{refused:?}"
    );
    let after = expect(operator.get(&format!("/events/{id}")).await.unwrap(), 200).unwrap();
    assert_eq!(after.data()["registered_count"], 3);
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM event_registrations WHERE event_id = $1")
            .bind(id.parse::<Uuid>().unwrap())
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(rows, 3, "one registration row per seat");
}

/// Registering twice keeps one seat (200 the second time); cancelling frees it for the
/// next member, and cancelling again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_twice_is_idempotent_and_cancelling_frees_the_seat() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let event = published_event(&operator, json!({"max_participants": 1})).await;
    let register = format!("/events/{}/register", event["id"].as_str().unwrap());
    let first = app.sign_in(&member_phone()).await;
    let second = app.sign_in(&member_phone()).await;

    let booked = expect(first.post(&register, &json!({})).await.unwrap(), 201).unwrap();
    assert_eq!(booked.data()["registered_count"], 1);
    let again = expect(first.post(&register, &json!({})).await.unwrap(), 200).unwrap();
    assert_eq!(again.data()["registered_count"], 1);
    assert_eq!(again.data()["is_registered"], true);
    let full = second.post(&register, &json!({})).await.unwrap();
    assert_eq!((full.status, full.error_code()), (409, Some("event_full")));

    let cancelled = expect(first.delete(&register).await.unwrap(), 200).unwrap();
    assert_eq!(cancelled.data()["registered_count"], 0);
    assert_eq!(cancelled.data()["is_registered"], false);
    let cancelled_again = expect(first.delete(&register).await.unwrap(), 200).unwrap();
    assert_eq!(cancelled_again.data()["registered_count"], 0);

    let booked = expect(second.post(&register, &json!({})).await.unwrap(), 201).unwrap();
    assert_eq!(booked.data()["registered_count"], 1);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM event_registrations")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

/// Insiders cannot propose; a VIP member can, with every field checked (422 naming the
/// field); the proposal takes no registrations until a moderator approves it; transitions
/// that make no sense are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vip_members_propose_and_moderators_approve() {
    let app = TestApp::spawn().await;
    let insider = app.sign_in(&member_phone()).await;
    let refused = insider.post("/events", &proposal(json!({}))).await.unwrap();
    assert_eq!(
        (refused.status, refused.error_code()),
        (403, Some("tier_too_low")),
        "{}",
        refused.body
    );

    let vip_phone = member_phone();
    let vip = app.sign_in(&vip_phone).await;
    make_vip(&app, &vip_phone).await;
    let past = rfc3339(OffsetDateTime::now_utc() - Duration::hours(1));
    let cases = [
        (json!({"title": "  "}), "invalid_title", "title"),
        (json!({"title": "x".repeat(201)}), "invalid_title", "title"),
        (json!({"date": past}), "invalid_date", "date"),
        (
            json!({"max_participants": 0}),
            "invalid_max_participants",
            "max_participants",
        ),
        (
            json!({"max_participants": 10_001}),
            "invalid_max_participants",
            "max_participants",
        ),
        (
            json!({"min_status_tier": "Gold"}),
            "invalid_tier",
            "min_status_tier",
        ),
    ];
    for (overrides, code, field) in cases {
        let response = vip
            .post("/events", &proposal(overrides.clone()))
            .await
            .unwrap();
        assert_eq!(
            (response.status, response.error_code()),
            (422, Some(code)),
            "{overrides}: {}",
            response.body
        );
        let message = response.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{message} names {field}");
    }

    let proposed = expect(
        vip.post(
            "/events",
            &proposal(
                json!({"title": "Мастер-класс по уходу за кожей", "min_status_tier": "Elite"}),
            ),
        )
        .await
        .unwrap(),
        201,
    )
    .unwrap();
    assert_eq!(proposed.data()["status"], "proposed");
    assert_eq!(proposed.data()["min_status_tier"], "Elite");
    let id = proposed.data()["id"].as_str().unwrap().to_owned();
    let closed = vip
        .post(&format!("/events/{id}/register"), &json!({}))
        .await
        .unwrap();
    assert_eq!(
        (closed.status, closed.error_code()),
        (409, Some("registration_closed"))
    );

    let patch = format!("/admin/events/{id}");
    let by_member = vip
        .patch(&patch, &json!({"status": "approved"}))
        .await
        .unwrap();
    assert_eq!(by_member.status, 403);

    let moderator_phone = "+79000000002";
    krug::commands::grant(app.services.clone(), moderator_phone, "moderator", None)
        .await
        .unwrap();
    let moderator = app.sign_in(moderator_phone).await;
    let nonsense = moderator
        .patch(&patch, &json!({"status": "someday"}))
        .await
        .unwrap();
    assert_eq!(
        (nonsense.status, nonsense.error_code()),
        (422, Some("invalid_status"))
    );
    let skipping = moderator
        .patch(&patch, &json!({"status": "active"}))
        .await
        .unwrap();
    assert_eq!(
        (skipping.status, skipping.error_code()),
        (422, Some("invalid_transition")),
        "a proposal is approved before it starts"
    );
    let approved = expect(
        moderator
            .patch(&patch, &json!({"status": "approved"}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(approved.data()["status"], "approved");
    expect(
        moderator
            .patch(&patch, &json!({"status": "approved"}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    let back = moderator
        .patch(&patch, &json!({"status": "proposed"}))
        .await
        .unwrap();
    assert_eq!(
        (back.status, back.error_code()),
        (422, Some("invalid_transition"))
    );
    let unknown = moderator
        .patch(
            &format!("/admin/events/{}", Uuid::new_v4()),
            &json!({"status": "approved"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (404, Some("event_not_found"))
    );

    // Published: members see it; a VIP is still below Elite.
    let listed = expect(insider.get("/events").await.unwrap(), 200).unwrap();
    assert_eq!(ids(listed.data()), [id.as_str()]);
    let below = vip
        .post(&format!("/events/{id}/register"), &json!({}))
        .await
        .unwrap();
    assert_eq!(
        (below.status, below.error_code()),
        (403, Some("tier_too_low"))
    );

    let cancelled = expect(
        moderator
            .patch(&patch, &json!({"status": "cancelled"}))
            .await
            .unwrap(),
        200,
    )
    .unwrap();
    assert_eq!(cancelled.data()["status"], "cancelled");
    let revived = moderator
        .patch(&patch, &json!({"status": "approved"}))
        .await
        .unwrap();
    assert_eq!(
        (revived.status, revived.error_code()),
        (422, Some("invalid_transition"))
    );
}

/// An event tomorrow: its registered members get one reminder (template `event_reminder`)
/// with the local time, however often the schedule runs; members who did not register get
/// none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_members_get_one_reminder_the_day_before() {
    let app = TestApp::spawn().await;
    let operator = app.operator().await;
    let tz = app.env.timezone;
    let tomorrow = domain::local_time::today(tz).next_day().unwrap();
    let at = domain::local_time::start_of_day(tz, tomorrow) + Duration::hours(19);
    let event = published_event(
        &operator,
        json!({"title": "Вечер сыров", "date": rfc3339(at)}),
    )
    .await;
    let event_id: Uuid = event["id"].as_str().unwrap().parse().unwrap();
    let registered_phone = member_phone();
    let registered = app.sign_in(&registered_phone).await;
    let bystander = app.sign_in(&member_phone()).await;
    expect(
        registered
            .post(&format!("/events/{event_id}/register"), &json!({}))
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    let later = published_event(&operator, json!({"date": rfc3339(at + Duration::days(1))})).await;
    expect(
        bystander
            .post(
                &format!("/events/{}/register", later["id"].as_str().unwrap()),
                &json!({}),
            )
            .await
            .unwrap(),
        201,
    )
    .unwrap();
    let user_id: Uuid = sqlx::query_scalar("SELECT id FROM users WHERE phone = $1")
        .bind(&registered_phone)
        .fetch_one(&app.db)
        .await
        .unwrap();

    let runs = [
        jobs::schedule::trigger(&app.env.queue, &app.env.db, "event_reminders")
            .await
            .unwrap(),
        jobs::schedule::trigger(&app.env.queue, &app.env.db, "event_reminders")
            .await
            .unwrap(),
    ];
    // The notify job of this reminder: its id comes from the reminder's dedupe key.
    let send = Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("notify:event-reminder:{event_id}:{user_id}").as_bytes(),
    );
    for job in runs.into_iter().chain([send]) {
        eventually(20, "the reminder jobs to finish", || async {
            jobs::inspect::job(&app.env.queue, QueueName::Notify, job)
                .await
                .unwrap()
                .filter(|j| j.state == JobState::Done)
        })
        .await;
    }

    let reminders: Vec<(Option<Uuid>, String)> =
        sqlx::query_as("SELECT user_id, body FROM notifications WHERE template = 'event_reminder'")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(reminders.len(), 1, "{reminders:?}");
    assert_eq!(reminders[0].0, Some(user_id));
    assert!(
        reminders[0].1.contains("Вечер сыров") && reminders[0].1.contains("19:00"),
        "{}",
        reminders[0].1
    );
    let sent: Vec<(Uuid, Option<OffsetDateTime>)> =
        sqlx::query_as("SELECT id, reminder_sent_at FROM events")
            .fetch_all(&app.db)
            .await
            .unwrap();
    for (id, reminded) in sent {
        assert_eq!(reminded.is_some(), id == event_id, "only tomorrow's event");
    }
}
