-- Version 4: credit amounts are whole numbers within stated bounds, refused by the database itself (see
-- ../0004_amount_bounds.sql for why). Keep the bounds equal to MAX_ENTRY and MAX_BALANCE in storage/ledger.py:
--   * one ledger entry moves at most 1,000,000,000 credits either way, in each of its two columns;
--   * a member's credits in one server (available + held) are at most 1,000,000,000.
-- SQLite needs BEFORE triggers (it cannot add a CHECK to an existing table, and any column can hold any
-- type); here the columns are BIGINT, so "is it an integer" is the column type itself, and the bounds are
-- plain CHECK constraints named like SQLite's triggers. NOT VALID, as on SQLite: they guard every new write
-- and leave rows written before them to verify(), instead of failing the upgrade.
ALTER TABLE ledger ADD CONSTRAINT ledger_amounts_in_range CHECK (
    delta_available BETWEEN -1000000000 AND 1000000000 AND delta_held BETWEEN -1000000000 AND 1000000000
) NOT VALID;
-- One constraint stands for SQLite's balances_insert_in_range and balances_update_in_range triggers.
ALTER TABLE balances ADD CONSTRAINT balances_in_range CHECK (available + held <= 1000000000) NOT VALID;
