/** `document.body.dataset.ready`: set to the route name when a page has its data, cleared while loading. */
export function markReady(name: string): void {
  document.body.dataset.ready = name;
}

export function markBusy(): void {
  delete document.body.dataset.ready;
}
