// Small progressive enhancements for the server-rendered forms. Every page works without
// this script; it only hides what does not apply and adds formset rows.
(function () {
  "use strict";

  function fieldValue(form, name) {
    const field = form.querySelector(`[name="${name}"]`);
    return field ? field.value : "";
  }

  // `data-show-when="kind=public_cloud&provider=aws"`; a value may list alternatives
  // separated by commas.
  function conditionHolds(form, condition) {
    return condition.split("&").every(function (clause) {
      const [name, values] = clause.split("=");
      return values.split(",").includes(fieldValue(form, name));
    });
  }

  // Keep only the option groups whose label is the chosen provider's name.
  function filterProviderGroups(form) {
    const provider = form.querySelector('[name="provider"]');
    if (!provider) return;
    const label = provider.options[provider.selectedIndex]?.text;
    form.querySelectorAll('[name="region"] optgroup, [name="instance_types"] optgroup')
      .forEach(function (group) {
        group.hidden = group.label !== label;
        group.disabled = group.label !== label;
      });
  }

  function refresh(form) {
    form.querySelectorAll("[data-show-when]").forEach(function (set) {
      const visible = conditionHolds(form, set.dataset.showWhen);
      set.hidden = !visible;
      // A disabled fieldset's fields are not submitted: what does not apply is not sent.
      set.disabled = !visible;
    });
    filterProviderGroups(form);
  }

  function addFormsetRow(section) {
    const prefix = section.dataset.formsetPrefix;
    const total = section.querySelector(`[name="${prefix}-TOTAL_FORMS"]`);
    const template = section.querySelector("template.formset-empty");
    const html = template.innerHTML.replaceAll("__prefix__", total.value);
    section.querySelector(".formset-rows").insertAdjacentHTML("beforeend", html);
    total.value = String(Number(total.value) + 1);
  }

  // `<form data-confirm="Delete …?">`: ask before submitting (no inline handlers: the
  // Content-Security-Policy allows no inline script).
  document.addEventListener("submit", function (event) {
    const message = event.target.dataset && event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });

  // `data-change-after-swap`: once htmx swapped new fields into the element, let its form
  // hide what does not apply ("change" above) and refresh what depends on the fields.
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.target.hasAttribute && event.target.hasAttribute("data-change-after-swap")) {
      event.target.closest("form").dispatchEvent(new Event("change", { bubbles: true }));
    }
  });

  // Header menus (`<details class="nav-menu">`) work without this; with it, one menu is open
  // at a time and Escape or a click elsewhere closes it, as menus do.
  function closeMenus(except) {
    document.querySelectorAll("details.nav-menu[open]").forEach(function (menu) {
      if (menu !== except) menu.removeAttribute("open");
    });
  }
  document.addEventListener("click", function (event) {
    closeMenus(event.target.closest && event.target.closest("details.nav-menu"));
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    const menu = document.activeElement && document.activeElement.closest("details.nav-menu");
    closeMenus(null);
    if (menu) menu.querySelector("summary").focus();
  });

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form.edit-form").forEach(function (form) {
      form.addEventListener("change", function () { refresh(form); });
      refresh(form);
    });
    document.querySelectorAll("[data-formset-add]").forEach(function (button) {
      button.addEventListener("click", function () {
        addFormsetRow(button.closest("[data-formset-prefix]"));
      });
    });
  });
})();
