-- The connect widget's look per application: accent colour and logo (JSON).

ALTER TABLE applications ADD COLUMN branding TEXT;
