/* The visible text boxes of one graph that intersect another (by more than 1 px): tests/browser/test_browser.py. */
(graphId) => {
  const root = document.getElementById(graphId);
  if (!root) return ["no graph " + graphId];
  const boxes = [];
  for (const t of root.querySelectorAll("svg text")) {
    if (!t.textContent.trim() || t.closest(".hoverlayer")) continue;
    const style = getComputedStyle(t);
    if (style.display === "none" || style.visibility === "hidden" || style.opacity === "0") continue;
    const r = t.getBoundingClientRect();
    if (r.width < 1 || r.height < 1) continue;
    boxes.push({text: t.textContent.trim(), r});
  }
  const out = [];
  const shrink = 1;  // px of tolerance
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i].r, b = boxes[j].r;
    if (a.left + shrink < b.right - shrink && b.left + shrink < a.right - shrink && a.top + shrink < b.bottom - shrink && b.top + shrink < a.bottom - shrink)
      out.push(boxes[i].text + " × " + boxes[j].text);
  }
  return out;
}
