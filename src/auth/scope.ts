/**
 * Which subjects a key may act on: an exact list, a prefix (such as "tenant-a/"), or both.
 * A key with no scope acts on every subject; a scoped key never on the "*" defaults, nor on
 * operations over every subject at once.
 */
export interface SubjectScope {
  subjects: readonly string[];
  prefix: string | null;
}

export function inScope(scope: SubjectScope | null, subject: string): boolean {
  if (!scope) return true;
  if (subject === '*') return false;
  return (
    scope.subjects.includes(subject) || (scope.prefix !== null && subject.startsWith(scope.prefix))
  );
}

export function describeScope(scope: SubjectScope): string {
  const parts = [
    ...scope.subjects.map((s) => JSON.stringify(s)),
    ...(scope.prefix !== null ? [`those starting with ${JSON.stringify(scope.prefix)}`] : []),
  ];
  return parts.join(', ');
}
