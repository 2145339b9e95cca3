-- Version 4: credit amounts are whole numbers within stated bounds, refused by the database itself.
--
-- Why: SQLite stores an integer that does not fit in 64 bits as a REAL (and an INTEGER column keeps a value
-- like 1.5 or 'ten' as it was given). A 2^63 admin amount once reached the ledger that way; the balance cache
-- then turned into a floating-point number and a later "set to 1234" showed 1024. storage/ledger.py refuses
-- such amounts before writing (AmountOutOfRange); these triggers are the second line, for any writer.
--
-- The bounds (keep them equal to MAX_ENTRY and MAX_BALANCE in storage/ledger.py):
--   * one ledger entry moves at most 1,000,000,000 credits either way, in each of its two columns;
--   * a member's credits in one server (available + held) are at most 1,000,000,000.
-- 10^9 credits are $5,000,000 of video; sums of entries this size stay far inside 64-bit integers.
--
-- SQLite cannot add a CHECK to an existing table (no ALTER TABLE ... ADD CHECK), and rebuilding the ledger
-- would mean dropping its append-only triggers; BEFORE triggers that RAISE(ABORT) have the same effect: the
-- statement fails and nothing of it is written. On PostgreSQL the same rules are plain CHECK constraints:
--   ledger:   CHECK (delta_available BETWEEN -1000000000 AND 1000000000
--                    AND delta_held BETWEEN -1000000000 AND 1000000000)   (columns are BIGINT there, so the
--                    "is it an integer" half is the column type itself)
--   balances: CHECK (available + held <= 1000000000)
-- typeof() runs after the column's INTEGER affinity is applied, so '10' (text that is an integer) is stored
-- and accepted as 10, while 1.5, 'ten' and 9223372036854775808 (a REAL to SQLite) are refused.

CREATE TRIGGER ledger_amounts_in_range BEFORE INSERT ON ledger
WHEN typeof(NEW.delta_available) <> 'integer' OR typeof(NEW.delta_held) <> 'integer'
  OR NEW.delta_available NOT BETWEEN -1000000000 AND 1000000000
  OR NEW.delta_held NOT BETWEEN -1000000000 AND 1000000000
BEGIN
    SELECT RAISE(ABORT, 'ledger amount is not a whole number of credits within bounds');
END;

-- The balance cache is written by ledger_apply (INSERT OR IGNORE of a zero row, then UPDATE), so both
-- statements are guarded. The existing CHECKs already refuse negative values.
CREATE TRIGGER balances_insert_in_range BEFORE INSERT ON balances
WHEN typeof(NEW.available) <> 'integer' OR typeof(NEW.held) <> 'integer'
  OR NEW.available + NEW.held > 1000000000
BEGIN
    SELECT RAISE(ABORT, 'balance is not a whole number of credits within bounds');
END;

CREATE TRIGGER balances_update_in_range BEFORE UPDATE OF available, held ON balances
WHEN typeof(NEW.available) <> 'integer' OR typeof(NEW.held) <> 'integer'
  OR NEW.available + NEW.held > 1000000000
BEGIN
    SELECT RAISE(ABORT, 'balance is not a whole number of credits within bounds');
END;
