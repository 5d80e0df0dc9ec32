/**
 * PURE: the removal gate. Every removal a run plans passes through here before any of them
 * runs; with a cap (`--max-delete`), a run that would remove more than the cap removes none.
 * With `--max-change`, every overwrite (an update, a link given another target) waits with the
 * removals, and a run that would change more existing entries than that cap changes none.
 *
 * rsync and rclone delete the first N and then stop, which leaves a half-mirrored replica.
 * foldersync decides on the whole count instead, so it must hold the removals back until the
 * walk is done, and with them whatever depends on them: creations that replace a removed
 * entry, and everything planned in a directory that has removals (a new name there may be the
 * same name as a removed one on a case-insensitive disk) or under a directory created there.
 * The rest of each part is applied at once, so memory grows with the removals, not the tree.
 *
 * @module
 */

import { emptyPlan, parentOf, type Plan, type RemoveAction } from "../model/actions.ts";

/**
 * A cap on removals (`--max-delete`) or on changes to existing entries (`--max-change`): a
 * number of entries, or a percentage of the replica's entries.
 */
export type MaxDelete = { count: number } | { percent: number };

/**
 * True when transfer `t` overwrites an entry the replica has: an update, or a link given
 * another target. (A type change is a removal and a creation.)
 */
export function isOverwrite(t: Plan["transfers"][number]): boolean {
  return t.op === "update" || (t.op === "link" && t.replace === "symlink");
}

/** The gate's verdict on a run's removals. */
export interface GateVerdict {
  /** True when the removals may run. */
  allowed: boolean;
  /** The cap, in entries. */
  limit: number;
  /** The removals planned. */
  planned: number;
}

/**
 * Judges `planned` removals against `cap`, where the replica holds `replicaEntries` entries.
 *
 * @example Judging
 * ```ts
 * judgeRemovals(120, 1000, { percent: 10 }); // { allowed: false, limit: 100, planned: 120 }
 * ```
 */
export function judgeRemovals(planned: number, replicaEntries: number, cap: MaxDelete): GateVerdict {
  const limit = "count" in cap ? cap.count : Math.floor((cap.percent / 100) * replicaEntries);
  return { allowed: planned <= limit, limit, planned };
}

/**
 * Splits each part of a plan into what can be applied now and what must wait for the gate;
 * {@linkcode HeldPlan.release} gives back what waited, as one part to apply after the verdict.
 *
 * @example Holding removals back
 * ```ts
 * const held = new HeldPlan();
 * const now = held.split(planner.takePart()); // apply `now` at once
 * const rest = held.release(); // removals and what depends on them
 * ```
 */
export class HeldPlan {
  #held: Plan = emptyPlan();
  /** Directories with removals in them, and directories created in held parts. */
  #dirs = new Set<string>();
  #overwrites: boolean;

  /** With `overwrites` (`--max-change`), updates and relinks wait for the verdict too. */
  constructor(options: { overwrites?: boolean } = {}) {
    this.#overwrites = options.overwrites ?? false;
  }

  /** The removals held so far. */
  get removes(): readonly RemoveAction[] {
    return this.#held.removes;
  }

  /** Takes `part`'s removals and what depends on them; returns the rest, to apply now. */
  split(part: Plan): Plan {
    for (const r of part.removes) {
      this.#held.removes.push(r);
      this.#dirs.add(parentOf(r.path));
    }
    const now: Plan = {
      mkdirs: [],
      transfers: [],
      removes: [],
      // foldersync's own temp files go at once: they are never user data to hold back.
      leftovers: part.leftovers,
      dirAttrs: part.dirAttrs,
      skipped: part.skipped,
      bytes: 0,
    };
    for (const m of part.mkdirs) {
      if (m.path !== "" && (m.replace !== undefined || this.#dirs.has(parentOf(m.path)))) {
        this.#held.mkdirs.push(m);
        this.#dirs.add(m.path);
      } else {
        now.mkdirs.push(m);
      }
    }
    for (const t of part.transfers) {
      const size = t.op === "copy" || t.op === "update" ? t.size : 0;
      const waits = (t.op !== "attrs" && t.replace !== undefined) || this.#dirs.has(parentOf(t.path)) ||
        (this.#overwrites && isOverwrite(t));
      const into = waits ? this.#held : now;
      into.transfers.push(t);
      into.bytes += size;
    }
    return now;
  }

  /** Everything held, as one part; the gate's verdict decides whether its removals run. */
  release(): Plan {
    const held = this.#held;
    this.#held = emptyPlan();
    this.#dirs.clear();
    return held;
  }
}
