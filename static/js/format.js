// Number formatting shared by the chart scripts (load it before them).
window.lcpFormat = {
  bytes: function (n) {
    if (n === null || n === undefined) return "";
    const units = [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]];
    for (const [unit, size] of units) if (Math.abs(n) >= size) return (n / size).toFixed(1) + " " + unit;
    return Math.round(n) + " B";
  },
  // What follows a number of a unit of the table of series (controlplane/monitoring/series.py UNITS) on an axis.
  suffix: function (unit) {
    return { percent: " %", tokens_per_second: " tok/s", seconds: " s", celsius: " °C", watts: " W", megahertz: " MHz" }[unit] || "";
  },
};
