-- latest_funding: the newest settled rate per venue and perp, per interval and annualized for the interval in force.
SELECT exchange, symbol, funding_ts, round(funding_rate * 1e4, 3) AS rate_bp, interval_h,
       round(funding_apr * 100, 2) AS apr_pct, round(forecast_error * 1e4, 3) AS forecast_error_bp
FROM funding_rates
QUALIFY row_number() OVER (PARTITION BY exchange, symbol ORDER BY funding_ts DESC) = 1
ORDER BY exchange, symbol
