// Per session, the last few statement shapes it ran: a repeat (same text, or same shape with other literals) finds its entry without lexing.

import type { QueryShape } from "../../sql/fingerprint.ts";
import type { QueryStats } from "./stats.ts";
import { sameShapeAt, type Template } from "../../sql/template.ts";

/** Shapes remembered per session (most recent first). */
const SLOTS = 4;
/** Longer texts are not remembered (memory per session stays small); they go through the shape cache. */
export const MAX_TEXT = 1024;

class Recent {
  constructor(
    /** The last text seen of this shape. */
    public text: string,
    readonly template: Template | null,
    readonly shape: QueryShape,
    public entry: QueryStats,
  ) {}
}

export class RecentShapes {
  private readonly slots: Recent[] = [];

  /** The shape of `text` (whose UTF-8 bytes are `bytes`) if it is one of the session's recent ones, moved to the front; else null. */
  find(text: string, bytes: Uint8Array): Recent | null {
    const slots = this.slots;
    for (let k = 0; k < slots.length; k++) {
      const r = slots[k]!;
      if (r.text === text || (r.template !== null && sameShapeAt(r.template, bytes, 0, bytes.length))) {
        if (k > 0) {
          slots.splice(k, 1);
          slots.unshift(r);
        }
        r.text = text;
        return r;
      }
    }
    return null;
  }

  /** `template`: the shape's template that `text` matches, when it has one (analytics' shared index holds them). */
  remember(text: string, template: Template | null, shape: QueryShape, entry: QueryStats): void {
    if (text.length > MAX_TEXT) return;
    if (this.slots.unshift(new Recent(text, template, shape, entry)) > SLOTS) this.slots.pop();
  }
}
