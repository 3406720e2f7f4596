# Markdown rows of docs/flash-communication-accuracy.md from the JSON lines that
# docs/flash-communication-accuracy.sh writes:
#   jq -s -r --arg m small-llama -f docs/flash-communication-accuracy.jq /tmp/flashcomm-table.jsonl
[.[] | select(.model == $m)] | sort_by(.tp, (if .bits == 16 then 0 else 1 end), -.bits, .group, .symmetric)[] |
"| \(.tp) | \(if .bits == 16 then "control (fp32, exact sum)" else "INT\(.bits) \(if .symmetric then "sym" else "asym" end)" end) | \(if .bits == 16 then "–" else .group end) | \(if .bits == 16 then "2 (16-bit)" else (.bytes_per_element * 10000 | round / 10000 | tostring) end) | \(.ppl * 1000 | round / 1000) | \(if .ratio >= 1 then "+" else "−" end)\(((.ratio - 1) | fabs) * 100 * 10000 | round / 10000)% | \(if .kl_mean < 1e-4 then (.kl_mean * 1e8 | round / 1e8 | tostring) else (.kl_mean * 1e5 | round / 1e5 | tostring) end) | \(.top1_agreement * 10000 | round / 100)% |"
