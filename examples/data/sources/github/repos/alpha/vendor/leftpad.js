module.exports = function leftpad(s, n) { return String(s).padStart(n); };
