//! Black-box tests of the whole system: the real API and worker on real Postgres and Redis,
//! with third-party HTTP services replaced by fake servers speaking their documented format.

mod fakes;
mod helpers;

mod admin;
mod analytics;
mod auth;
mod backlog;
mod board;
mod cli;
mod crm;
mod dashboard;
mod email;
mod events;
mod expiry;
mod fuzz;
mod http;
mod inner_circle;
mod integrations;
mod media;
mod members;
mod operations;
mod ops;
mod partners;
mod payments;
mod pending;
mod promo;
mod push;
mod referral;
mod reliability;
mod scans;
mod security;
mod settlement;
mod states;
mod support;
