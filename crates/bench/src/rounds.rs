//! `--rounds N`: the scenarios measured N times over in one run, against the one server, and
//! each figure summarised as its median and range over the rounds.
//!
//! On a virtual machine that shares its cores, two runs of one binary differ by more than most
//! changes do (kept-alive tokens cost 155–280 µs of server CPU in one session here), so a single
//! run's ratio says little. A ratio is taken within its round (a token's CPU against the floor
//! measured right after it, a token on a new connection against the handshake of the same round)
//! and only then summarised, so what the machine's drift between rounds moves in both parts of a
//! ratio cancels out of it. Not all of it does: the floor is measured on an otherwise idle
//! machine and the server's CPU under load, and a drift that moves one more than the other stays.

use crate::Row;

/// The name of the server-CPU-per-request figure.
pub(crate) const CPU: &str = "server CPU per request";

/// One figure over the rounds: its name, its unit, and its value in each round that gave one
/// (with the round's number: a round whose row had errors gives none).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Figure {
    pub(crate) scenario: String,
    pub(crate) name: &'static str,
    pub(crate) unit: &'static str,
    pub(crate) values: Vec<(usize, f64)>,
}

impl Figure {
    /// The middle value (the mean of the two middle ones for an even count).
    pub(crate) fn median(&self) -> f64 {
        let mut sorted: Vec<f64> = self.values.iter().map(|(_, value)| *value).collect();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        match (sorted.len() % 2, sorted.get(middle), middle.checked_sub(1)) {
            (1, Some(value), _) => *value,
            (0, Some(high), Some(low)) => (high + sorted.get(low).copied().unwrap_or(*high)) / 2.0,
            _ => 0.0,
        }
    }

    /// The lowest and the highest value.
    pub(crate) fn range(&self) -> (f64, f64) {
        self.values.iter().fold(
            (f64::INFINITY, f64::NEG_INFINITY),
            |(low, high), (_, value)| (low.min(*value), high.max(*value)),
        )
    }

    fn format(&self, value: f64) -> String {
        match self.unit {
            "×" => format!("{value:.2}×"),
            "ms" => format!("{value:.2} ms"),
            "µs" => format!("{value:.1} µs"),
            _ => format!("{value:.0}{}", self.unit),
        }
    }

    /// Each round's value, formatted after its round's number, in the rounds' order.
    fn each_round(&self) -> String {
        self.values
            .iter()
            .map(|(round, value)| format!("{round}: {}", self.format(*value)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `token-keepalive  server CPU / crypto floor  median 2.85× (range 2.41× – 3.40×), 3 values:
    /// 1: 2.85×, 2: 3.40×, 3: 2.41×`
    pub(crate) fn line(&self) -> String {
        let [median, low, high, count, each] = self.cells();
        format!(
            "{:<16} {:<28} median {median} (range {low} – {high}), {count} values: {each}",
            self.scenario, self.name,
        )
    }

    /// The median, the lowest, the highest, how many values and each round's value.
    fn cells(&self) -> [String; 5] {
        let (low, high) = self.range();
        [
            self.format(self.median()),
            self.format(low),
            self.format(high),
            self.values.len().to_string(),
            self.each_round(),
        ]
    }
}

/// Whether a row is one of certbound's that measured something: a row with errors measured
/// refusals, which cost less than the work they stand for; the disk's and the peer's are not
/// certbound's.
fn measured(row: &&Row) -> bool {
    row.server == "certbound" && row.stats.errors == 0 && row.cpu_per_request_us > 0.0
}

/// certbound's measured row of `scenario` in `round`, if that round measured one.
pub(crate) fn of_round<'a>(
    rows: &'a [Row],
    scenario: &str,
    round: Option<usize>,
) -> Option<&'a Row> {
    rows.iter()
        .filter(measured)
        .find(|row| row.scenario == scenario && row.round == round)
}

/// certbound's figures, scenario by scenario in the order first measured: server CPU per request,
/// CPU over the crypto floor of the same round, requests per second, p99, and a token on a new
/// connection over the handshake of the same round. Rows with errors give no figure (a refusal
/// costs less than the work it stands for), nor does the disk's row.
pub(crate) fn summarise(rows: &[Row]) -> Vec<Figure> {
    let mut scenarios: Vec<&str> = Vec::new();
    for row in rows.iter().filter(measured) {
        if !scenarios.contains(&row.scenario.as_str()) {
            scenarios.push(&row.scenario);
        }
    }
    let mut figures = Vec::new();
    for scenario in scenarios {
        let of_scenario: Vec<&Row> = rows
            .iter()
            .filter(measured)
            .filter(|row| row.scenario == scenario)
            .collect();
        let figure = |name, unit, value: &dyn Fn(&Row) -> Option<f64>| Figure {
            scenario: scenario.to_owned(),
            name,
            unit,
            values: of_scenario
                .iter()
                .filter_map(|row| Some((row.round?, value(row)?)))
                .collect(),
        };
        figures.push(figure(CPU, "µs", &|row| Some(row.cpu_per_request_us)));
        // A token on a new connection is held to the handshake of its round, below, not to
        // the crypto floor, which a handshake alone exceeds many times over.
        if scenario != "token-newconn" {
            figures.push(figure("server CPU / crypto floor", "×", &|row| {
                row.floor_us
                    .filter(|floor| *floor > 0.0)
                    .map(|floor| row.cpu_per_request_us / floor)
            }));
        }
        figures.push(figure("requests per second", " req/s", &|row| {
            Some(row.stats.rate())
        }));
        figures.push(figure("p99", "ms", &|row| Some(row.stats.percentile(0.99))));
        if scenario == "token-newconn" {
            figures.push(figure("/ handshake of its round", "×", &|row| {
                of_round(rows, "handshake", row.round)
                    .map(|handshake| row.cpu_per_request_us / handshake.cpu_per_request_us)
            }));
        }
    }
    figures.retain(|figure| !figure.values.is_empty());
    figures
}

/// The summary as a Markdown table.
pub(crate) fn markdown(figures: &[Figure]) -> String {
    let mut out = String::from(
        "\n| scenario | figure | median | lowest | highest | values | each round (round: value) |\n|---|---|---|---|---|---|---|\n",
    );
    for figure in figures {
        let [median, low, high, count, each] = figure.cells();
        out.push_str(&format!(
            "| {} | {} | {median} | {low} | {high} | {count} | {each} |\n",
            figure.scenario, figure.name,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Stats;

    fn row(scenario: &str, round: usize, cpu: f64, floor: Option<f64>, errors: usize) -> Row {
        Row {
            server: "certbound".into(),
            scenario: scenario.into(),
            round: Some(round),
            stats: Stats {
                requests: 1000,
                errors,
                seconds: 2.0,
                latencies_us: vec![100, 200, 300, 4000],
                first_error: None,
            },
            cpu_per_request_us: cpu,
            floor_us: floor,
            details: None,
        }
    }

    fn named<'a>(figures: &'a [Figure], scenario: &str, name: &str) -> &'a Figure {
        figures
            .iter()
            .find(|figure| figure.scenario == scenario && figure.name == name)
            .unwrap()
    }

    #[test]
    fn the_median_is_the_middle_value_or_the_mean_of_the_two_middle_ones() {
        let figure = |values: Vec<f64>| Figure {
            scenario: "cards".into(),
            name: "p99",
            unit: "ms",
            values: values.into_iter().enumerate().collect(),
        };
        assert_eq!(figure(vec![3.0, 1.0, 2.0]).median(), 2.0);
        assert_eq!(figure(vec![4.0, 1.0, 3.0, 2.0]).median(), 2.5);
        assert_eq!(figure(vec![7.0]).median(), 7.0);
        assert_eq!(figure(vec![]).median(), 0.0);
        assert_eq!(figure(vec![4.0, 1.0, 3.0]).range(), (1.0, 4.0));
    }

    #[test]
    fn a_figure_reads_the_same_in_the_terminal_and_in_markdown() {
        let figure = Figure {
            scenario: "token-keepalive".into(),
            name: "server CPU / crypto floor",
            unit: "×",
            // Round 2 gave no value (its row had errors).
            values: vec![(1, 2.5), (3, 3.0), (4, 2.0)],
        };
        assert!(
            figure.line().ends_with(
                "median 2.50× (range 2.00× – 3.00×), 3 values: 1: 2.50×, 3: 3.00×, 4: 2.00×"
            ),
            "{}",
            figure.line()
        );
        assert!(markdown(&[figure]).contains(
            "| token-keepalive | server CPU / crypto floor | 2.50× | 2.00× | 3.00× | 3 | 1: 2.50×, 3: 3.00×, 4: 2.00× |"
        ));
    }

    #[test]
    fn each_ratio_is_taken_within_its_round() {
        let rows = vec![
            row("token-newconn", 1, 900.0, Some(60.0), 0),
            row("handshake", 1, 600.0, None, 0),
            row("token-newconn", 2, 600.0, Some(40.0), 0),
            row("handshake", 2, 500.0, None, 0),
        ];
        let figures = summarise(&rows);
        // 900/600 and 600/500, not 900/500 or the medians' 750/550.
        assert_eq!(
            named(&figures, "token-newconn", "/ handshake of its round").values,
            vec![(1, 1.5), (2, 1.2)]
        );
        assert!(
            figures
                .iter()
                .all(|figure| !(figure.scenario == "token-newconn"
                    && figure.name == "server CPU / crypto floor")),
            "a new connection's token is held to the handshake, not to the crypto floor"
        );
        assert_eq!(
            named(&figures, "handshake", "server CPU per request").median(),
            550.0
        );
        assert!(
            figures
                .iter()
                .all(|figure| !(figure.scenario == "handshake" && figure.unit == "×")),
            "a handshake has no floor and no handshake to compare with"
        );
    }

    #[test]
    fn rows_with_errors_and_rows_of_others_give_no_figure() {
        let mut peer = row("token-keepalive", 1, 1300.0, None, 0);
        peer.server = "oidc-provider".into();
        peer.round = None;
        let mut disk = row("durable-write", 1, 50.0, None, 0);
        disk.server = "disk".into();
        let rows = vec![
            row("token-keepalive", 1, 160.0, Some(64.0), 0),
            row("token-keepalive", 2, 90.0, Some(60.0), 3),
            row("token-newconn", 2, 800.0, Some(60.0), 0),
            row("handshake", 2, 500.0, None, 1),
            peer,
            disk,
        ];
        let figures = summarise(&rows);
        assert_eq!(
            named(&figures, "token-keepalive", "server CPU per request").values,
            vec![(1, 160.0)]
        );
        assert!(
            figures
                .iter()
                .all(|figure| figure.name != "/ handshake of its round"),
            "the round's handshake had errors"
        );
        assert!(
            figures
                .iter()
                .all(|figure| figure.scenario != "durable-write")
        );
        assert_eq!(
            named(&figures, "token-keepalive", "p99").values,
            vec![(1, 4.0)]
        );
        assert_eq!(
            named(&figures, "token-keepalive", "server CPU / crypto floor").values,
            vec![(1, 2.5)]
        );
    }
}
