//! Problem 3: SGD on problems where L, σ² and f* are known exactly, with the
//! measured min_{k<t} E‖∇f(w_k)‖² set against the right-hand side of 3(iii).
//! The derivation is in docs/theory/sgd.md.

use std::fmt;
use std::str::FromStr;

use rand::rngs::SmallRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// Dimension of the test problems.
pub const DIM: usize = 2;

/// A test problem: f, its gradient, and the constants of Assumptions 1 and 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Problem {
    /// f(w) = Σ h(w_i), h(u) = u²/2 for |u| ≤ 1 and |u| − 1/2 beyond: a
    /// quadratic bowl whose gradient stays bounded (|∂_i f| ≤ 1), as
    /// Assumption 2 needs. L = 1, f* = 0.
    HuberQuadratic,
    /// f(w) = Σ (1 − cos w_i): smooth, non-convex (maxima at w_i = π),
    /// bounded below. L = 1, f* = 0, |∂_i f| = |sin w_i| ≤ 1.
    Cosine,
}

impl Problem {
    pub const ALL: [Problem; 2] = [Problem::HuberQuadratic, Problem::Cosine];

    pub fn name(self) -> &'static str {
        match self {
            Problem::HuberQuadratic => "huber-quadratic",
            Problem::Cosine => "cosine",
        }
    }

    /// Lipschitz constant of ∇f.
    pub fn lipschitz(self) -> f64 {
        1.0
    }

    pub fn f_star(self) -> f64 {
        0.0
    }

    /// sup_w ‖∇f(w)‖² (each coordinate of the gradient is at most 1 in size).
    pub fn grad_sq_sup(self) -> f64 {
        DIM as f64
    }

    /// The starting point, outside the quadratic region / past the first inflection.
    pub fn start(self) -> [f64; DIM] {
        match self {
            Problem::HuberQuadratic => [3.0, -2.0],
            Problem::Cosine => [2.5, -2.0],
        }
    }

    pub fn value(self, w: &[f64; DIM]) -> f64 {
        w.iter()
            .map(|&u| match self {
                Problem::HuberQuadratic if u.abs() <= 1.0 => 0.5 * u * u,
                Problem::HuberQuadratic => u.abs() - 0.5,
                Problem::Cosine => 1.0 - u.cos(),
            })
            .sum()
    }

    /// Writes ∇f(w) into `g` and returns ‖∇f(w)‖².
    #[inline]
    pub fn gradient(self, w: &[f64; DIM], g: &mut [f64; DIM]) -> f64 {
        let mut sq = 0.0;
        for (gi, &u) in g.iter_mut().zip(w) {
            *gi = match self {
                Problem::HuberQuadratic => u.clamp(-1.0, 1.0),
                Problem::Cosine => u.sin(),
            };
            sq += *gi * *gi;
        }
        sq
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// α_k = c / (k + 1)^p; p = 0 is a constant step. (k + 1) because the
/// sheet's 1/k^p is undefined at k = 0.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    pub c: f64,
    pub p: f64,
}

impl Schedule {
    pub fn constant(alpha: f64) -> Self {
        Self { c: alpha, p: 0.0 }
    }

    pub fn alpha(&self, k: usize) -> f64 {
        if self.p == 0.0 {
            self.c
        } else {
            self.c / ((k + 1) as f64).powf(self.p)
        }
    }

    /// The exponent r in RHS(t) = O(t^r) (up to a log factor at p = 1/2):
    /// the first term decays like t^{−(1−p)}, the second like t^{−p}.
    pub fn predicted_rate(&self) -> f64 {
        if self.p <= 0.0 || self.p >= 1.0 {
            0.0
        } else {
            -self.p.min(1.0 - self.p)
        }
    }

    /// The limit of the RHS for a constant step: σ² L α / 2.
    pub fn plateau(&self, sigma2: f64, lipschitz: f64) -> Option<f64> {
        (self.p == 0.0).then(|| sigma2 * lipschitz * self.c / 2.0)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.p == 0.0 {
            write!(f, "α = {}", self.c)
        } else {
            write!(f, "{}/(k+1)^{}", self.c, self.p)
        }
    }
}

impl FromStr for Schedule {
    type Err = String;

    /// `c/(k+1)^p`, or a plain number for a constant step.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.replace(' ', "");
        let positive = |v: f64, what: &str| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(format!("schedule `{s}`: {what} must be a positive number"))
            }
        };
        if let Ok(alpha) = s.parse::<f64>() {
            return Ok(Schedule::constant(positive(alpha, "the step")?));
        }
        let (c, p) = s
            .split_once("/(k+1)^")
            .ok_or_else(|| format!("schedule `{s}` is not `c/(k+1)^p` or a number"))?;
        let c = c
            .parse()
            .map_err(|_| format!("schedule `{s}`: `{c}` is not a number"))?;
        let p = p
            .parse()
            .map_err(|_| format!("schedule `{s}`: `{p}` is not a number"))?;
        Ok(Schedule {
            c: positive(c, "c")?,
            p: positive(p, "p")?,
        })
    }
}

/// Simulation settings.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SgdConfig {
    pub steps: usize,
    pub runs: usize,
    /// E‖ξ‖² of the gradient noise ξ ~ N(0, noise/DIM · I).
    pub noise: f64,
    pub seed: u64,
}

/// One (problem, schedule) pair: the measured quantity against the bound.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RateCurve {
    pub problem: Problem,
    pub schedule: Schedule,
    pub schedule_label: String,
    pub lipschitz: f64,
    pub sigma2: f64,
    pub f_star: f64,
    pub f_start: f64,
    /// Sample points t (log-spaced) with the measured running minimum of
    /// E‖∇f(w_k)‖² over k < t, its standard error, and the bound RHS(t).
    pub t: Vec<usize>,
    pub measured: Vec<f64>,
    pub standard_error: Vec<f64>,
    pub bound: Vec<f64>,
    /// Least-squares slope of log(measured) against log t over the last two decades.
    pub fitted_slope: f64,
    /// The same for the bound itself.
    pub bound_slope: f64,
    pub predicted_rate: f64,
    /// Whether measured − 3·SE ≤ RHS held at every t = 1 … steps.
    pub bound_held: bool,
    /// max over t of measured / RHS (below 1 where the bound holds).
    pub worst_ratio: f64,
    /// σ² L α / 2 for a constant step.
    pub plateau: Option<f64>,
}

/// Per-iteration sums over runs of ‖∇f(w_k)‖² and its square.
struct Acc {
    sum: Vec<f64>,
    sq: Vec<f64>,
}

impl Acc {
    fn new(steps: usize) -> Self {
        Self {
            sum: vec![0.0; steps],
            sq: vec![0.0; steps],
        }
    }

    fn merge(mut self, other: Acc) -> Acc {
        for (a, b) in self.sum.iter_mut().zip(&other.sum) {
            *a += b;
        }
        for (a, b) in self.sq.iter_mut().zip(&other.sq) {
            *a += b;
        }
        self
    }
}

fn run_once(problem: Problem, schedule: &Schedule, config: &SgdConfig, run: usize, acc: &mut Acc) {
    let mut rng =
        SmallRng::seed_from_u64(config.seed ^ (run as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let noise_sd = (config.noise / DIM as f64).sqrt();
    let mut w = problem.start();
    let mut g = [0.0; DIM];
    for k in 0..config.steps {
        let sq = problem.gradient(&w, &mut g);
        acc.sum[k] += sq;
        acc.sq[k] += sq * sq;
        let alpha = schedule.alpha(k);
        for (wi, gi) in w.iter_mut().zip(&g) {
            let xi: f64 = StandardNormal.sample(&mut rng);
            *wi -= alpha * (gi + noise_sd * xi);
        }
    }
}

/// Indices 1 … n, about `per_decade` per decade, always including n.
pub fn log_points(n: usize, per_decade: usize) -> Vec<usize> {
    let mut points: Vec<usize> = (0..)
        .map(|i| 10f64.powf(i as f64 / per_decade as f64).round() as usize)
        .take_while(|&t| t <= n)
        .collect();
    points.dedup();
    if points.last() != Some(&n) {
        points.push(n);
    }
    points
}

fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let cov: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let var: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    cov / var
}

/// Runs `config.runs` independent SGD runs in parallel and compares them with 3(iii).
pub fn simulate(problem: Problem, schedule: Schedule, config: &SgdConfig) -> RateCurve {
    let steps = config.steps.max(2);
    let config = SgdConfig {
        steps,
        ..config.clone()
    };
    let runs = config.runs.max(2);
    let acc = (0..runs)
        .into_par_iter()
        .fold(
            || Acc::new(steps),
            |mut acc, r| {
                run_once(problem, &schedule, &config, r, &mut acc);
                acc
            },
        )
        .reduce(|| Acc::new(steps), Acc::merge);
    let n = runs as f64;
    let mean: Vec<f64> = acc.sum.iter().map(|s| s / n).collect();
    let se: Vec<f64> = acc
        .sq
        .iter()
        .zip(&mean)
        .map(|(sq, m)| ((sq / n - m * m).max(0.0) * n / (n - 1.0) / n).sqrt())
        .collect();

    let lipschitz = problem.lipschitz();
    let sigma2 = problem.grad_sq_sup() + config.noise;
    let f_start = problem.value(&problem.start());
    let gap = f_start - problem.f_star();
    // Running minimum over k < t, the partial sums of α and α², and the check at every t.
    let (mut best, mut best_se) = (f64::INFINITY, 0.0);
    let (mut sum_a, mut sum_a2) = (0.0, 0.0);
    let mut running = Vec::with_capacity(steps);
    let mut held = true;
    let mut worst_ratio: f64 = 0.0;
    for k in 0..steps {
        if mean[k] < best {
            (best, best_se) = (mean[k], se[k]);
        }
        let a = schedule.alpha(k);
        sum_a += a;
        sum_a2 += a * a;
        let rhs = gap / sum_a + sigma2 * lipschitz / 2.0 * sum_a2 / sum_a;
        held &= best - 3.0 * best_se <= rhs;
        worst_ratio = worst_ratio.max(best / rhs);
        running.push((best, best_se, rhs));
    }
    let t = log_points(steps, 20);
    let pick =
        |f: fn(&(f64, f64, f64)) -> f64| t.iter().map(|&t| f(&running[t - 1])).collect::<Vec<_>>();
    let (measured, standard_error, bound) = (pick(|r| r.0), pick(|r| r.1), pick(|r| r.2));
    let window: Vec<usize> = (0..t.len()).filter(|&i| t[i] * 100 >= steps).collect();
    let logs = |v: &[f64]| {
        window
            .iter()
            .map(|&i| v[i].max(f64::MIN_POSITIVE).ln())
            .collect::<Vec<_>>()
    };
    let log_t: Vec<f64> = window.iter().map(|&i| (t[i] as f64).ln()).collect();
    RateCurve {
        problem,
        schedule,
        schedule_label: schedule.to_string(),
        lipschitz,
        sigma2,
        f_star: problem.f_star(),
        f_start,
        fitted_slope: slope(&log_t, &logs(&measured)),
        bound_slope: slope(&log_t, &logs(&bound)),
        predicted_rate: schedule.predicted_rate(),
        plateau: schedule.plateau(sigma2, lipschitz),
        t,
        measured,
        standard_error,
        bound,
        bound_held: held,
        worst_ratio,
    }
}

/// The sheet's schedules: constant steps below, at and above 1/L, and the two decaying ones.
pub fn default_schedules() -> Vec<Schedule> {
    vec![
        Schedule::constant(0.05),
        Schedule::constant(0.5),
        Schedule::constant(1.5),
        Schedule { c: 1.0, p: 0.75 },
        Schedule { c: 1.0, p: 0.5 },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_predict_their_rates() {
        let s: Schedule = "0.5/(k+1)^0.75".parse().unwrap();
        assert_eq!(s, Schedule { c: 0.5, p: 0.75 });
        assert_eq!(s.predicted_rate(), -0.25);
        assert_eq!(
            "1/(k+1)^0.5".parse::<Schedule>().unwrap().predicted_rate(),
            -0.5
        );
        assert_eq!("0.1".parse::<Schedule>().unwrap(), Schedule::constant(0.1));
        assert!("1/k^2".parse::<Schedule>().is_err());
        assert!("-1/(k+1)^0.5".parse::<Schedule>().is_err());
        assert_eq!(
            Schedule::constant(0.1).plateau(3.0, 1.0),
            Some(0.15000000000000002)
        );
    }

    #[test]
    fn gradients_match_finite_differences() {
        for p in Problem::ALL {
            let w = [0.7, -1.9];
            let mut g = [0.0; DIM];
            p.gradient(&w, &mut g);
            for i in 0..DIM {
                let (mut a, mut b) = (w, w);
                a[i] += 1e-6;
                b[i] -= 1e-6;
                let fd = (p.value(&a) - p.value(&b)) / 2e-6;
                assert!((fd - g[i]).abs() < 1e-8, "{p} {i}: {fd} vs {}", g[i]);
            }
        }
    }

    #[test]
    fn bound_of_3iii_holds_within_three_standard_errors() {
        let config = SgdConfig {
            steps: 3000,
            runs: 200,
            noise: 1.0,
            seed: 7,
        };
        for problem in Problem::ALL {
            for schedule in default_schedules() {
                let curve = simulate(problem, schedule, &config);
                assert!(
                    curve.bound_held,
                    "{problem} {schedule}: worst ratio {}",
                    curve.worst_ratio
                );
                assert!(curve.measured.iter().all(|m| m.is_finite() && *m >= 0.0));
            }
        }
    }

    #[test]
    fn constant_step_plateaus_and_decaying_steps_keep_decreasing() {
        let config = SgdConfig {
            steps: 20_000,
            runs: 100,
            noise: 1.0,
            seed: 1,
        };
        let constant = simulate(Problem::HuberQuadratic, Schedule::constant(0.5), &config);
        assert!(
            constant.fitted_slope.abs() < 0.1,
            "{}",
            constant.fitted_slope
        );
        let decaying = simulate(
            Problem::HuberQuadratic,
            Schedule { c: 1.0, p: 0.75 },
            &config,
        );
        assert!(decaying.fitted_slope < -0.2, "{}", decaying.fitted_slope);
    }
}
