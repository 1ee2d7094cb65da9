//! CronTask schedules, pure: parsing `spec.schedule` (5-field cron, or a descriptor such as
//! `@daily`) in `spec.timeZone` (IANA, default UTC), and finding which scheduled time is due,
//! as Kubernetes' CronJob controller does.
//!
//! Times are [`Timestamp`]s (k8s-openapi's jiff) at the boundary; the calendar arithmetic
//! happens on zoned times, so a schedule keeps its wall-clock time across DST changes.

use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp, tz};

/// Most skipped scheduled times [`due`] counts; past it the count stops (the most recent
/// time is found directly, so a CronTask suspended for months costs no more than one
/// suspended for minutes). Kubernetes' CronJob warns at the same number.
pub const MAX_COUNTED: u32 = 100;

/// A parsed schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: TimeZone,
    zone_name: String,
}

/// Parses `spec.schedule` in `spec.timeZone` (unset or empty: UTC). The error names the
/// field and the value, fit for a status condition.
pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, String> {
    let zone_name = match time_zone.map(str::trim) {
        None | Some("") => "UTC",
        Some(name) => name,
    };
    let zone = tz::db().get(zone_name).map_err(|_| {
        format!(
            "spec.timeZone {zone_name:?}: unknown time zone (use an IANA name such as \"Europe/Berlin\", or leave it unset for UTC)"
        )
    })?;
    let cron = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(schedule)
        .map_err(|e| {
            let e = e.to_string();
            let e = e.trim_end_matches('.');
            format!(
                "spec.schedule {schedule:?}: {e}; use 5 fields: minute (0-59) hour (0-23) day-of-month (1-31) month (1-12) day-of-week (0-7, both 0 and 7 are Sunday), e.g. \"0 9 * * 1-5\""
            )
        })?;
    Ok(Schedule {
        cron,
        zone,
        zone_name: zone_name.to_string(),
    })
}

impl Schedule {
    /// The first scheduled time strictly after `t`; `None` when the pattern matches no later
    /// time (e.g. "0 0 30 2 *").
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let zoned = t.to_zoned(self.zone.clone());
        self.cron
            .find_next_occurrence(&zoned, false)
            .ok()
            .map(|z| z.timestamp())
            .filter(|next| *next > t)
    }

    /// The last scheduled time at or before `t`.
    fn last_at_or_before(&self, t: Timestamp) -> Option<Timestamp> {
        let zoned = t.to_zoned(self.zone.clone());
        self.cron
            .find_previous_occurrence(&zoned, true)
            .ok()
            .map(|z| z.timestamp())
            .filter(|last| *last <= t)
    }

    /// The time zone's name, for messages.
    pub fn zone_name(&self) -> &str {
        &self.zone_name
    }
}

/// What is due at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The most recent scheduled time after the last run (or the creation) and at or before
    /// `now`: the one run to start. Older ones are never started (as in a CronJob).
    pub scheduled: Option<Timestamp>,
    /// Whether `scheduled` is past its starting deadline (`now - scheduled > deadline`), so
    /// it must not start.
    pub missed: bool,
    /// Scheduled times before `scheduled` in the same window, which will not run; at most
    /// [`MAX_COUNTED`].
    pub skipped: u32,
    /// The first scheduled time after `now`.
    pub next: Option<Timestamp>,
}

/// The run due at `now`: the most recent scheduled time in `(last_scheduled or created,
/// now]`, whether it missed `starting_deadline`, how many earlier times are skipped, and the
/// next time after `now`. Bounded: the most recent time is found directly, and counting the
/// skipped ones stops at [`MAX_COUNTED`].
pub fn due(
    schedule: &Schedule,
    last_scheduled: Option<Timestamp>,
    created: Timestamp,
    now: Timestamp,
    starting_deadline: Option<Duration>,
) -> Due {
    let since = last_scheduled.unwrap_or(created);
    let next = schedule.next_after(now);
    let scheduled = schedule.last_at_or_before(now).filter(|t| *t > since);
    let Some(scheduled) = scheduled else {
        return Due {
            scheduled: None,
            missed: false,
            skipped: 0,
            next,
        };
    };
    let mut skipped = 0;
    let mut t = since;
    while skipped < MAX_COUNTED {
        match schedule.next_after(t) {
            Some(earlier) if earlier < scheduled => {
                skipped += 1;
                t = earlier;
            }
            _ => break,
        }
    }
    let missed = starting_deadline.is_some_and(|deadline| {
        let late = now.duration_since(scheduled);
        SignedDuration::try_from(deadline).is_ok_and(|deadline| late > deadline)
    });
    Due {
        scheduled: Some(scheduled),
        missed,
        skipped,
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("test timestamps are valid")
    }

    fn every_minute() -> Schedule {
        parse("* * * * *", None).expect("valid")
    }

    #[test]
    fn every_minute_is_due_once_a_minute() {
        let schedule = every_minute();
        let created = at("2025-01-01T09:00:30Z");
        assert_eq!(
            schedule.next_after(created),
            Some(at("2025-01-01T09:01:00Z"))
        );
        let idle = due(&schedule, None, created, at("2025-01-01T09:00:59Z"), None);
        assert_eq!(idle.scheduled, None, "nothing due before the first minute");
        assert_eq!(idle.next, Some(at("2025-01-01T09:01:00Z")));

        let first = due(&schedule, None, created, at("2025-01-01T09:01:00Z"), None);
        assert_eq!(first.scheduled, Some(at("2025-01-01T09:01:00Z")));
        assert!(!first.missed);
        assert_eq!(first.skipped, 0);
        assert_eq!(first.next, Some(at("2025-01-01T09:02:00Z")));

        let after_run = due(
            &schedule,
            Some(at("2025-01-01T09:01:00Z")),
            created,
            at("2025-01-01T09:01:40Z"),
            None,
        );
        assert_eq!(after_run.scheduled, None, "a run is due once");
    }

    #[test]
    fn a_late_controller_runs_only_the_most_recent_time() {
        let schedule = every_minute();
        let late = due(
            &schedule,
            Some(at("2025-01-01T09:00:00Z")),
            at("2025-01-01T08:00:00Z"),
            at("2025-01-01T09:05:10Z"),
            None,
        );
        assert_eq!(late.scheduled, Some(at("2025-01-01T09:05:00Z")));
        assert_eq!(late.skipped, 4, "09:01 to 09:04 are skipped");
        assert!(!late.missed, "no deadline: never missed");
    }

    #[test]
    fn counting_skipped_times_is_bounded() {
        let schedule = every_minute();
        let months = due(
            &schedule,
            Some(at("2025-01-01T00:00:00Z")),
            at("2025-01-01T00:00:00Z"),
            at("2025-06-01T12:34:56Z"),
            None,
        );
        assert_eq!(months.scheduled, Some(at("2025-06-01T12:34:00Z")));
        assert_eq!(months.skipped, MAX_COUNTED);
        assert_eq!(months.next, Some(at("2025-06-01T12:35:00Z")));
    }

    #[test]
    fn starting_deadline_missed_or_not() {
        let schedule = parse("0 * * * *", None).expect("valid");
        let last = Some(at("2025-01-01T08:00:00Z"));
        let created = at("2025-01-01T07:00:00Z");
        let deadline = Some(Duration::from_secs(60));
        let in_time = due(
            &schedule,
            last,
            created,
            at("2025-01-01T09:01:00Z"),
            deadline,
        );
        assert_eq!(in_time.scheduled, Some(at("2025-01-01T09:00:00Z")));
        assert!(!in_time.missed, "exactly the deadline is still in time");
        let too_late = due(
            &schedule,
            last,
            created,
            at("2025-01-01T09:01:01Z"),
            deadline,
        );
        assert_eq!(too_late.scheduled, Some(at("2025-01-01T09:00:00Z")));
        assert!(too_late.missed);
        assert_eq!(too_late.next, Some(at("2025-01-01T10:00:00Z")));
    }

    #[test]
    fn weekdays_at_nine_in_berlin_keep_wall_clock_time_across_dst() {
        // Berlin moves from CET (+01:00) to CEST (+02:00) on Sunday 2025-03-30.
        let schedule = parse("0 9 * * 1-5", Some("Europe/Berlin")).expect("valid");
        assert_eq!(schedule.zone_name(), "Europe/Berlin");
        let friday = at("2025-03-28T08:00:00Z");
        assert_eq!(
            schedule.next_after(at("2025-03-27T08:00:00Z")),
            Some(friday),
            "09:00 CET"
        );
        assert_eq!(
            schedule.next_after(friday),
            Some(at("2025-03-31T07:00:00Z")),
            "Monday 09:00 CEST, the weekend skipped"
        );
        let monday = due(
            &schedule,
            Some(friday),
            at("2025-03-01T00:00:00Z"),
            at("2025-03-31T07:00:05Z"),
            Some(Duration::from_secs(10)),
        );
        assert_eq!(monday.scheduled, Some(at("2025-03-31T07:00:00Z")));
        assert!(!monday.missed);
        assert_eq!(monday.skipped, 0);
        assert_eq!(monday.next, Some(at("2025-04-01T07:00:00Z")));
        // And back to CET on Sunday 2025-10-26.
        assert_eq!(
            schedule.next_after(at("2025-10-24T07:00:00Z")),
            Some(at("2025-10-27T08:00:00Z"))
        );
    }

    #[test]
    fn descriptors_and_names_are_accepted() {
        let daily = parse("@daily", Some("UTC")).expect("valid");
        assert_eq!(
            daily.next_after(at("2025-01-01T09:00:00Z")),
            Some(at("2025-01-02T00:00:00Z"))
        );
        let hourly = parse("@hourly", None).expect("valid");
        assert_eq!(
            hourly.next_after(at("2025-01-01T09:00:00Z")),
            Some(at("2025-01-01T10:00:00Z"))
        );
        let named = parse("30 6 * JAN MON", None).expect("valid");
        assert_eq!(
            named.next_after(at("2025-01-01T00:00:00Z")),
            Some(at("2025-01-06T06:30:00Z"))
        );
        assert!(parse("0 9 * * 1-5", Some("")).is_ok(), "empty zone is UTC");
    }

    #[test]
    fn day_of_month_or_day_of_week_as_in_cron() {
        // Both restricted: either matches (vixie cron, and Kubernetes' CronJob).
        let schedule = parse("0 0 13 * 5", None).expect("valid");
        assert_eq!(
            schedule.next_after(at("2025-06-01T00:00:00Z")),
            Some(at("2025-06-06T00:00:00Z")),
            "Friday the 6th, before the 13th"
        );
    }

    #[test]
    fn invalid_schedules_and_zones_name_the_field() {
        let minute = parse("61 * * * *", None).expect_err("minute 61");
        assert!(
            minute.starts_with("spec.schedule \"61 * * * *\": "),
            "{minute}"
        );
        let six = parse("0 0 9 * * 1", None).expect_err("six fields");
        assert!(six.contains("5 fields"), "{six}");
        let words = parse("every day", None).expect_err("words");
        assert!(
            words.starts_with("spec.schedule \"every day\": "),
            "{words}"
        );
        let zone = parse("* * * * *", Some("Mars/Base")).expect_err("zone");
        assert_eq!(
            zone,
            "spec.timeZone \"Mars/Base\": unknown time zone (use an IANA name such as \"Europe/Berlin\", or leave it unset for UTC)"
        );
    }

    #[test]
    fn a_schedule_that_never_matches_has_no_next_time() {
        let never = parse("0 0 30 2 *", None).expect("parses");
        assert_eq!(never.next_after(at("2025-01-01T00:00:00Z")), None);
        let d = due(
            &never,
            None,
            at("2025-01-01T00:00:00Z"),
            at("2025-03-01T00:00:00Z"),
            None,
        );
        assert_eq!((d.scheduled, d.next), (None, None));
    }
}
