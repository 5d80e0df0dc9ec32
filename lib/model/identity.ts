/**
 * Device and inode numbers: what tells that two paths are the same folder when their text
 * cannot (a bind mount, a second mount, a hard-linked folder).
 *
 * @module
 */

/** Where an entry lives: device and inode numbers (lstat). */
export interface Identity {
  dev: number;
  ino: number;
}

/** True when two identities name the same entry. */
export function sameIdentity(a: Identity | undefined, b: Identity | undefined): boolean {
  return a !== undefined && b !== undefined && a.dev === b.dev && a.ino === b.ino;
}
