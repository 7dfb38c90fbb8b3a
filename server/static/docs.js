"use strict";
// Renders the server's own OpenAPI document: one collapsible entry per operation, with its
// parameters, request body and responses, and the referenced schemas resolved one level deep.
(async () => {
  const main = document.getElementById("ops");
  let doc;
  try {
    doc = await (await fetch("/openapi.json")).json();
  } catch (e) {
    main.textContent = `cannot load /openapi.json: ${e}`;
    return;
  }
  document.getElementById("title").textContent = doc.info.title;
  document.getElementById("version").textContent = `version ${doc.info.version}`;
  document.getElementById("description").textContent = doc.info.description || "";
  const schemas = (doc.components && doc.components.schemas) || {};
  const resolve = (s) => (s && s.$ref ? schemas[s.$ref.split("/").pop()] || s : s);
  const el = (tag, text, cls) => {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  };
  const globalSecurity = doc.security && doc.security.length > 0;
  main.replaceChildren();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (typeof op !== "object" || !op.responses) continue;
      const box = el("details", undefined, "op");
      box.id = `${method}-${path}`;
      const summary = el("summary");
      summary.append(el("span", method, "method"), el("span", ` ${path} `, "path"), el("span", op.summary || ""));
      const secured = op.security ? op.security.some((s) => Object.keys(s).length > 0) : globalSecurity;
      if (secured) summary.append(el("span", " (API key)", "lock"));
      box.append(summary);
      if (op.description) box.append(el("p", op.description));
      if (op.parameters && op.parameters.length) {
        box.append(el("h4", "Parameters"));
        const ul = el("ul");
        for (const p of op.parameters) {
          ul.append(el("li", `${p.name} (${p.in}${p.required ? ", required" : ""}): ${p.description || ""}`));
        }
        box.append(ul);
      }
      if (op.requestBody) {
        box.append(el("h4", "Request body"));
        for (const [type, media] of Object.entries(op.requestBody.content || {})) {
          box.append(el("p", type, "path"));
          if (media.schema) box.append(el("pre", JSON.stringify(resolve(media.schema), null, 2)));
        }
      }
      box.append(el("h4", "Responses"));
      for (const [status, resp] of Object.entries(op.responses)) {
        box.append(el("p", `${status}: ${resp.description || ""}`));
        for (const media of Object.values(resp.content || {})) {
          if (media.schema) box.append(el("pre", JSON.stringify(resolve(media.schema), null, 2)));
        }
      }
      main.append(box);
    }
  }
})();
